import { suite } from "uvu";
import * as assert from "uvu/assert";
import { decode, parseCreds, type User } from "@nats-io/jwt";
import { ValidationError } from "../../common/index.ts";
import {
  DEFAULT_BUCKETS,
  type BucketNames,
  BusBucketsError,
  bucketStreamConfigs,
  BusAuthorityError,
  createBusAuthority,
  mintAdminCredentials,
  mintClusterCredentials,
  parseBusAuthority,
  serverAuthConfig,
  type BusAuthority,
  BusClusterNameError,
  BusOptionsError,
  adminPolicy,
  assertClusterName,
  clusterPolicy,
} from "../../federation/internal.ts";

/** NATS subject matching: `*` is one token, a trailing `>` one or more. */
function matches(pattern: string, subject: string): boolean {
  const p = pattern.split(".");
  const s = subject.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return s.length > i;
    if (i >= s.length || (p[i] !== "*" && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

const allowed = (patterns: readonly string[], subject: string) => patterns.some((p) => matches(p, subject));

// --------------------------------------------------------------------------

const names = suite("cluster names on the bus");

const nameCases: { name: string; input: string; problems: number }[] = [
  { name: "a single letter", input: "a", problems: 0 },
  { name: "lowercase with a dash", input: "cluster-a", problems: 0 },
  { name: "digits only", input: "42", problems: 0 },
  { name: "63 characters", input: "a".repeat(63), problems: 0 },
  { name: "empty", input: "", problems: 1 },
  { name: "64 characters", input: "a".repeat(64), problems: 1 },
  { name: "a dot (two subject tokens)", input: "cluster.a", problems: 1 },
  { name: "a single-token wildcard", input: "*", problems: 1 },
  { name: "a full wildcard", input: ">", problems: 1 },
  { name: "uppercase", input: "Cluster", problems: 1 },
  { name: "an underscore", input: "cluster_a", problems: 1 },
  { name: "whitespace", input: "cluster a", problems: 1 },
  { name: "non-ASCII", input: "clüster", problems: 1 },
  { name: "a leading dash", input: "-a", problems: 1 },
  { name: "a trailing dash", input: "a-", problems: 1 },
  { name: "uppercase and a leading dash, both reported", input: "-A", problems: 2 },
  { name: "too long, a dot and a trailing dash, all reported", input: `${"a".repeat(63)}.b-`, problems: 3 },
];

for (const c of nameCases) {
  names(`${c.problems === 0 ? "accepts" : "rejects"} ${c.name}`, () => {
    if (c.problems === 0) {
      assertClusterName(c.input);
      return;
    }
    try {
      assertClusterName(c.input);
      assert.unreachable("should have thrown");
    } catch (err) {
      assert.instance(err, BusClusterNameError);
      assert.instance(err, ValidationError);
      const e = err as BusClusterNameError;
      assert.is(e.code, "FEDGATE_BUS_BAD_CLUSTER_NAME");
      assert.is(e.input, c.input);
      assert.is(e.problems.length, c.problems, e.message);
    }
  });
}

names("minting credentials for a bad name is refused before anything is signed", async () => {
  const authority = await createBusAuthority({ clusterSet: "demo" });
  try {
    await mintClusterCredentials(authority, "b.>");
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusClusterNameError);
  }
});

// --------------------------------------------------------------------------

const cluster = suite("what a cluster may publish and subscribe to");

cluster("is exactly its own KV keys plus the read API of the three KV streams", () => {
  const policy = clusterPolicy({ cluster: "cluster-a", buckets: DEFAULT_BUCKETS });
  const read = (stream: string) => [
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.*`,
    `$JS.API.CONSUMER.DELETE.${stream}.*`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.FC.${stream}.>`,
  ];
  assert.equal(
    [...policy.publish],
    [
      "$KV.fedgate-clusters.cluster-a.>",
      "$KV.fedgate-exports.cluster-a.>",
      ...read("KV_fedgate-clusters"),
      ...read("KV_fedgate-exports"),
      ...read("KV_fedgate-trust"),
    ],
  );
  assert.equal([...policy.subscribe], ["_INBOX.cluster-a.>"]);
  assert.is(policy.inboxPrefix, "_INBOX.cluster-a");
  assert.is(policy.name, "cluster/cluster-a");
});

const clusterCases: { name: string; subject: string; expect: boolean }[] = [
  { name: "its registration", subject: "$KV.fedgate-clusters.cluster-a.info", expect: true },
  { name: "its lease", subject: "$KV.fedgate-clusters.cluster-a.lease", expect: true },
  { name: "its own export", subject: "$KV.fedgate-exports.cluster-a.default.web", expect: true },
  { name: "another cluster's export", subject: "$KV.fedgate-exports.cluster-b.default.web", expect: false },
  { name: "the export of a cluster whose name extends its own", subject: "$KV.fedgate-exports.cluster-ab.default.web", expect: false },
  { name: "another cluster's lease", subject: "$KV.fedgate-clusters.cluster-b.lease", expect: false },
  { name: "the trust bundle", subject: "$KV.fedgate-trust.bundle", expect: false },
  { name: "a key outside every cluster's prefix", subject: "$KV.fedgate-exports.orphan", expect: false },
  { name: "stream create", subject: "$JS.API.STREAM.CREATE.KV_fedgate-exports", expect: false },
  { name: "stream update", subject: "$JS.API.STREAM.UPDATE.KV_fedgate-exports", expect: false },
  { name: "stream delete", subject: "$JS.API.STREAM.DELETE.KV_fedgate-exports", expect: false },
  { name: "stream purge", subject: "$JS.API.STREAM.PURGE.KV_fedgate-exports", expect: false },
  { name: "message delete", subject: "$JS.API.STREAM.MSG.DELETE.KV_fedgate-exports", expect: false },
  { name: "stream info", subject: "$JS.API.STREAM.INFO.KV_fedgate-exports", expect: false },
  { name: "consumer listing (names of other clusters' watchers)", subject: "$JS.API.CONSUMER.LIST.KV_fedgate-exports", expect: false },
  { name: "a consumer on a stream that is not a bucket", subject: "$JS.API.CONSUMER.CREATE.OTHER.c1", expect: false },
  { name: "a watch consumer on the exports stream", subject: "$JS.API.CONSUMER.CREATE.KV_fedgate-exports.oc_1.$KV.fedgate-exports.>", expect: true },
  { name: "a direct get of another cluster's export", subject: "$JS.API.DIRECT.GET.KV_fedgate-exports.$KV.fedgate-exports.cluster-b.default.web", expect: true },
  { name: "a reply to another user's inbox", subject: "_INBOX.cluster-b.abc", expect: false },
  { name: "message acks (watchers never ack)", subject: "$JS.ACK.KV_fedgate-exports.c.1.1.1.1.0", expect: false },
];

for (const c of clusterCases) {
  cluster(`${c.expect ? "may" : "may not"} publish to ${c.name}`, () => {
    const policy = clusterPolicy({ cluster: "cluster-a", buckets: DEFAULT_BUCKETS });
    assert.is(allowed(policy.publish, c.subject), c.expect, c.subject);
  });
}

cluster("subscribes only under its own inbox prefix, not another cluster's", () => {
  const policy = clusterPolicy({ cluster: "cluster-a", buckets: DEFAULT_BUCKETS });
  assert.ok(allowed(policy.subscribe, "_INBOX.cluster-a.X1.1"));
  assert.not.ok(allowed(policy.subscribe, "_INBOX.cluster-b.X1.1"));
  assert.not.ok(allowed(policy.subscribe, "_INBOX.X1"));
  assert.not.ok(allowed(policy.subscribe, "$KV.fedgate-exports.cluster-b.default.web"));
  assert.not.ok(allowed(policy.subscribe, "_INBOX._admin.X1"));
});

cluster("follows custom bucket names", () => {
  const buckets: BucketNames = { clusters: "c", exports: "e", trust: "t" };
  const policy = clusterPolicy({ cluster: "x", buckets });
  assert.ok(allowed(policy.publish, "$KV.e.x.ns.svc"));
  assert.not.ok(allowed(policy.publish, "$KV.fedgate-exports.x.ns.svc"));
  assert.ok(allowed(policy.publish, "$JS.API.CONSUMER.CREATE.KV_t.oc_1"));
});

cluster("rejects bucket names that are not one literal token, listing every problem", () => {
  try {
    clusterPolicy({ cluster: "a", buckets: { clusters: "c.>", exports: "*", trust: "*" } });
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusOptionsError);
    const e = err as BusOptionsError;
    assert.is(e.code, "FEDGATE_BUS_INVALID_OPTIONS");
    assert.equal(
      e.problems.map((p) => p.path),
      ["buckets.clusters", "buckets.exports", "buckets.trust", "buckets"],
    );
  }
});

// --------------------------------------------------------------------------

const admin = suite("what the ClusterSet admin may publish");

const adminCases: { name: string; subject: string; expect: boolean }[] = [
  { name: "stream create of a bucket", subject: "$JS.API.STREAM.CREATE.KV_fedgate-clusters", expect: true },
  { name: "stream update of a bucket", subject: "$JS.API.STREAM.UPDATE.KV_fedgate-exports", expect: true },
  { name: "stream info of a bucket", subject: "$JS.API.STREAM.INFO.KV_fedgate-trust", expect: true },
  { name: "the trust bundle", subject: "$KV.fedgate-trust.bundle", expect: true },
  { name: "another key of the trust bucket", subject: "$KV.fedgate-trust.other", expect: false },
  { name: "a cluster's export", subject: "$KV.fedgate-exports.cluster-a.default.web", expect: false },
  { name: "a cluster's lease", subject: "$KV.fedgate-clusters.cluster-a.lease", expect: false },
  { name: "stream create of another stream", subject: "$JS.API.STREAM.CREATE.OTHER", expect: false },
  { name: "stream delete", subject: "$JS.API.STREAM.DELETE.KV_fedgate-exports", expect: false },
  { name: "stream purge", subject: "$JS.API.STREAM.PURGE.KV_fedgate-exports", expect: false },
  { name: "a watch consumer on the trust stream", subject: "$JS.API.CONSUMER.CREATE.KV_fedgate-trust.oc_1.$KV.fedgate-trust.>", expect: true },
];

for (const c of adminCases) {
  admin(`${c.expect ? "may" : "may not"} publish to ${c.name}`, () => {
    assert.is(allowed(adminPolicy(DEFAULT_BUCKETS).publish, c.subject), c.expect, c.subject);
  });
}

admin("has an inbox prefix no cluster can have", () => {
  const policy = adminPolicy(DEFAULT_BUCKETS);
  assert.is(policy.inboxPrefix, "_INBOX._admin");
  assert.throws(() => assertClusterName("_admin"), (err: unknown) => err instanceof BusClusterNameError);
});

// --------------------------------------------------------------------------

const streams = suite("bucket stream configuration");

streams("turns roll-ups, delete markers and schedules off in every bucket, so no header reaches beyond its key", () => {
  for (const config of bucketStreamConfigs({ buckets: DEFAULT_BUCKETS, replicas: 3, history: 1 })) {
    assert.is(config.allow_rollup_hdrs, false, config.name);
    assert.is(config.subject_delete_marker_ttl, 0, config.name);
    assert.is(config.allow_msg_schedules, false, config.name);
    assert.is(config.deny_delete, true, config.name);
    assert.is(config.num_replicas, 3, config.name);
    assert.is(config.max_msgs_per_subject, 1, config.name);
  }
});

streams("uses the KV layout and allows message TTLs only where clusters write", () => {
  const configs = bucketStreamConfigs({ buckets: DEFAULT_BUCKETS, replicas: 1, history: 5 });
  assert.equal(
    configs.map((c) => [c.name, c.subjects, c.allow_msg_ttl, c.max_msgs_per_subject]),
    [
      ["KV_fedgate-clusters", ["$KV.fedgate-clusters.>"], true, 5],
      ["KV_fedgate-exports", ["$KV.fedgate-exports.>"], true, 5],
      ["KV_fedgate-trust", ["$KV.fedgate-trust.>"], false, 5],
    ],
  );
});

streams("rejects bad settings, listing every problem", () => {
  try {
    bucketStreamConfigs({ buckets: { clusters: "x", exports: "x", trust: "x" }, replicas: 0, history: 65 });
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusOptionsError);
    assert.equal(
      (err as BusOptionsError).problems.map((p) => p.path),
      ["buckets", "replicas", "history"],
    );
  }
});

streams("a server-side rejection is terminal, a transport failure retryable", () => {
  assert.is(new BusBucketsError("KV_x", new Error("timeout")).retryable, true);
  assert.is(new BusBucketsError("KV_x", new Error("timeout")).code, "FEDGATE_BUS_BUCKETS_FAILED");
});

// --------------------------------------------------------------------------

const authority = suite("bus authority and minted credentials");

authority("survives a JSON round-trip through a Secret", async () => {
  const created = await createBusAuthority({ clusterSet: "demo" });
  const parsed = parseBusAuthority(JSON.parse(JSON.stringify(created)));
  assert.equal(parsed, created);
  assert.equal(parseBusAuthority(JSON.parse(JSON.stringify(parsed))), created);
});

authority("refuses a stored authority whose keys do not belong together, listing every problem", async () => {
  const one = await createBusAuthority({ clusterSet: "demo" });
  const other = await createBusAuthority({ clusterSet: "demo" });
  const tampered: BusAuthority = {
    ...one,
    // Another authority's account: its seed does not match, and its JWT is signed by another operator.
    account: { ...one.account, seed: other.account.seed, jwt: other.account.jwt },
    systemAccount: { ...one.systemAccount, seed: one.operator.seed },
  };
  try {
    parseBusAuthority(JSON.parse(JSON.stringify(tampered)));
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusAuthorityError);
    const e = err as BusAuthorityError;
    assert.is(e.code, "FEDGATE_BUS_BAD_AUTHORITY");
    assert.equal(
      e.problems.map((p) => p.path),
      ["systemAccount.seed", "account.seed", "account.jwt", "account.jwt"],
    );
  }
});

authority("refuses a stored authority of the wrong shape", () => {
  try {
    parseBusAuthority({ v: 2, clusterSet: "demo" });
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusAuthorityError);
    assert.ok((err as BusAuthorityError).problems.length >= 5);
  }
});

authority("rejects a bad ClusterSet name and bad buckets together", async () => {
  try {
    await createBusAuthority({ clusterSet: "Demo", buckets: { clusters: "a", exports: "a", trust: "t" } });
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, BusOptionsError);
    assert.equal(
      (err as BusOptionsError).problems.map((p) => p.path),
      ["clusterSet", "buckets"],
    );
  }
});

authority("server config trusts the operator and preloads both accounts", async () => {
  const a = await createBusAuthority({ clusterSet: "demo" });
  const config = serverAuthConfig(a);
  assert.ok(config.includes(`operator: ${a.operator.jwt}`));
  assert.ok(config.includes(`system_account: ${a.systemAccount.publicKey}`));
  assert.ok(config.includes("resolver: MEMORY"));
  assert.ok(config.includes(`${a.systemAccount.publicKey}: ${a.systemAccount.jwt}`));
  assert.ok(config.includes(`${a.account.publicKey}: ${a.account.jwt}`));
  const account = decode<{ limits: Record<string, number | boolean> }>(a.account.jwt);
  assert.is(account.iss, a.operator.publicKey);
  // JetStream is off for an account without JetStream limits.
  assert.is(account.nats.limits?.["disk_storage"], -1);
  assert.is(account.nats.limits?.["conn"], -1);
});

authority("a cluster's JWT carries its policy, is signed by the account and is no bearer token", async () => {
  const a = await createBusAuthority({ clusterSet: "demo" });
  const credentials = await mintClusterCredentials(a, "cluster-a");
  const claims = decode<User>(credentials.jwt);
  const policy = clusterPolicy({ cluster: "cluster-a", buckets: a.buckets });
  assert.is(claims.iss, a.account.publicKey);
  assert.is(claims.name, "demo/cluster/cluster-a");
  assert.equal(claims.nats.pub?.allow, [...policy.publish]);
  assert.equal(claims.nats.sub?.allow, [...policy.subscribe]);
  assert.is(claims.nats.bearer_token, false);
  assert.equal(claims.nats.allowed_connection_types, ["STANDARD"]);
  assert.is(credentials.inboxPrefix, "_INBOX.cluster-a");

  const creds = await parseCreds(new TextEncoder().encode(credentials.creds));
  assert.is(creds.jwt, credentials.jwt);
  assert.is(creds.key, credentials.seed);
  assert.is(creds.aid, a.account.publicKey);
});

authority("the admin's JWT carries the admin policy", async () => {
  const a = await createBusAuthority({ clusterSet: "demo" });
  const claims = decode<User>((await mintAdminCredentials(a)).jwt);
  assert.equal(claims.nats.pub?.allow, [...adminPolicy(a.buckets).publish]);
  assert.equal(claims.nats.sub?.allow, ["_INBOX._admin.>"]);
});

names.run();
cluster.run();
admin.run();
streams.run();
authority.run();
