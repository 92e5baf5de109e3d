import { suite } from "uvu";
import * as assert from "uvu/assert";
import { AuthorizationError, PermissionViolationError, RequestError, connect, headers, jwtAuthenticator, type NatsConnection } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { fmtCreds } from "@nats-io/jwt";
import { createAccount, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { startNats, type NatsEnv } from "../env/index.ts";
import {
  DEFAULT_BUCKETS as BUCKETS,
  kvStream,
  kvSubject,
  ensureBuckets,
  connectOptionsFor,
  createBusAuthority,
  mintAdminCredentials,
  mintClusterCredentials,
  serverAuthConfig,
  type BusAuthority,
  type BusCredentials,
} from "../../federation/internal.ts";

// The server's error code for a refused roll-up (JSStreamRollupFailedF).
const ROLLUP_FAILED = 10111;

/** The permission violation behind a failed operation: thrown directly, or as the cause of a failed request. */
function permissionViolation(err: unknown): PermissionViolationError | undefined {
  if (err instanceof PermissionViolationError) return err;
  if (err instanceof RequestError && err.cause instanceof PermissionViolationError) return err.cause;
  return undefined;
}

async function assertRefused(operation: Promise<unknown>, subject: string): Promise<void> {
  try {
    await operation;
  } catch (err) {
    const violation = permissionViolation(err);
    assert.ok(violation, `expected a permission violation for ${subject}, got ${String(err)}`);
    assert.is(violation.operation, "publish");
    assert.is(violation.subject, subject);
    return;
  }
  assert.unreachable(`the server accepted a publish to ${subject}`);
}

async function assertRollupRefused(operation: Promise<unknown>): Promise<void> {
  try {
    await operation;
  } catch (err) {
    assert.instance(err, JetStreamApiError);
    assert.is((err as JetStreamApiError).code, ROLLUP_FAILED);
    return;
  }
  assert.unreachable("the server accepted a roll-up");
}

async function collect<T>(iterator: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterator) out.push(item);
  return out;
}

/** The first entry a watch delivers whose key satisfies `wanted`. */
async function firstWatched(kv: KV, key: string, wanted: (entry: KvEntry) => boolean): Promise<KvEntry> {
  const watch = await kv.watch({ key });
  for await (const entry of watch) {
    if (wanted(entry)) {
      watch.stop();
      return entry;
    }
  }
  throw new Error(`watch of ${key} ended without a matching entry`);
}

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function withDeadline<T>(work: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function connectAs(nats: NatsEnv, credentials: BusCredentials, name: string, server?: string): Promise<NatsConnection> {
  return connect({ servers: server ?? nats.urls, name, ...connectOptionsFor(credentials) });
}

// --------------------------------------------------------------------------

interface Ctx {
  authority?: BusAuthority;
  nats?: NatsEnv;
  admin?: NatsConnection;
  a?: NatsConnection;
  b?: NatsConnection;
}

interface Ready {
  authority: BusAuthority;
  nats: NatsEnv;
  admin: NatsConnection;
  a: NatsConnection;
  b: NatsConnection;
}

function ready(ctx: Ctx): Ready {
  const { authority, nats, admin, a, b } = ctx;
  if (!authority || !nats || !admin || !a || !b) throw new Error("suite setup did not complete");
  return { authority, nats, admin, a, b };
}

const bus = suite<Ctx>("least-privilege bus credentials on a real nats-server", {});

bus.before(async (ctx) => {
  ctx.authority = await createBusAuthority({ clusterSet: "demo" });
  ctx.nats = await startNats({ serverConfig: serverAuthConfig(ctx.authority) });
  ctx.admin = await connectAs(ctx.nats, await mintAdminCredentials(ctx.authority), "admin");
  await ensureBuckets(ctx.admin, { replicas: 1, history: 5 });
  ctx.a = await connectAs(ctx.nats, await mintClusterCredentials(ctx.authority, "cluster-a"), "cluster-a");
  ctx.b = await connectAs(ctx.nats, await mintClusterCredentials(ctx.authority, "cluster-b"), "cluster-b");
  await (await new Kvm(ctx.b).open(BUCKETS.exports)).put("cluster-b.default.api", "b's api");
  await (await new Kvm(ctx.admin).open(BUCKETS.trust)).put("bundle", "genuine bundle");
});

bus.after(async (ctx) => {
  await Promise.all([ctx.a?.close(), ctx.b?.close(), ctx.admin?.close()]);
  await ctx.nats?.stop();
});

bus("a cluster puts, gets, lists, watches, reads the history of and deletes its own keys", async (ctx) => {
  const { a } = ready(ctx);
  const kvm = new Kvm(a);
  const exports = await kvm.open(BUCKETS.exports);
  const clusters = await kvm.open(BUCKETS.clusters);

  await exports.put("cluster-a.default.web", "v1");
  await exports.put("cluster-a.default.web", "v2");
  assert.is((await exports.get("cluster-a.default.web"))?.string(), "v2");
  assert.equal((await collect(await exports.history({ key: "cluster-a.default.web" }))).map((e) => e.string()), ["v1", "v2"]);
  assert.ok((await collect(await exports.keys("cluster-a.>"))).includes("cluster-a.default.web"));
  assert.is((await firstWatched(exports, "cluster-a.>", (e) => e.key === "cluster-a.default.web")).string(), "v2");

  await exports.delete("cluster-a.default.web");
  assert.is((await exports.get("cluster-a.default.web"))?.operation, "DEL");
  assert.not.ok((await collect(await exports.keys("cluster-a.>"))).includes("cluster-a.default.web"));

  await clusters.put("cluster-a.info", "registration");
  assert.is((await clusters.get("cluster-a.info"))?.string(), "registration");
  assert.is((await firstWatched(clusters, "cluster-a.info", () => true)).string(), "registration");
});

bus("a cluster publishes a lease with a per-message TTL, and the server expires it", async (ctx) => {
  const { a } = ready(ctx);
  const clusters = await new Kvm(a).open(BUCKETS.clusters);
  const ack = await jetstream(a).publish(kvSubject(BUCKETS.clusters, "cluster-a.lease"), "alive", { ttl: "1s" });
  assert.is(ack.stream, kvStream(BUCKETS.clusters));
  assert.is((await clusters.get("cluster-a.lease"))?.string(), "alive");
  await eventually(async () => ((await clusters.get("cluster-a.lease")) === null ? true : undefined), "the lease to expire");
});

bus("a cluster withdraws its key with a delete marker that expires; kv purge is refused because roll-ups are off", async (ctx) => {
  const { a } = ready(ctx);
  const exports = await new Kvm(a).open(BUCKETS.exports);
  await exports.put("cluster-a.default.gone", "v1");

  await assertRollupRefused(exports.purge("cluster-a.default.gone"));
  await assertRollupRefused(exports.purge("cluster-a.default.gone", { ttl: "1s" }));

  const marker = headers();
  marker.set("KV-Operation", "DEL");
  await jetstream(a).publish(kvSubject(BUCKETS.exports, "cluster-a.default.gone"), undefined, { headers: marker, ttl: "1s" });
  assert.is((await exports.get("cluster-a.default.gone"))?.operation, "DEL");
  // Only the marker expires; with history 1 (the default) nothing of the key would remain.
  await eventually(async () => ((await exports.get("cluster-a.default.gone"))?.operation === "PUT" ? true : undefined), "the marker to expire");
});

bus("the server refuses a cluster's writes to another cluster's keys and to the trust bundle", async (ctx) => {
  const { a, admin } = ready(ctx);
  const kvm = new Kvm(a);
  const exports = await kvm.open(BUCKETS.exports);
  const clusters = await kvm.open(BUCKETS.clusters);
  const trust = await kvm.open(BUCKETS.trust);
  const js = jetstream(a);

  await assertRefused(exports.put("cluster-b.default.web", "forged"), kvSubject(BUCKETS.exports, "cluster-b.default.web"));
  await assertRefused(exports.create("cluster-b.default.web", "forged"), kvSubject(BUCKETS.exports, "cluster-b.default.web"));
  await assertRefused(exports.delete("cluster-b.default.api"), kvSubject(BUCKETS.exports, "cluster-b.default.api"));
  await assertRefused(clusters.put("cluster-b.info", "forged"), kvSubject(BUCKETS.clusters, "cluster-b.info"));
  await assertRefused(js.publish(kvSubject(BUCKETS.clusters, "cluster-b.lease"), "forged", { ttl: "30s" }), kvSubject(BUCKETS.clusters, "cluster-b.lease"));
  await assertRefused(trust.put("bundle", "forged"), kvSubject(BUCKETS.trust, "bundle"));

  const asAdmin = new Kvm(admin);
  const adminExports = await asAdmin.open(BUCKETS.exports);
  assert.is(await adminExports.get("cluster-b.default.web"), null);
  assert.is((await adminExports.get("cluster-b.default.api"))?.string(), "b's api");
  assert.is(await (await asAdmin.open(BUCKETS.clusters)).get("cluster-b.info"), null);
  assert.is((await (await asAdmin.open(BUCKETS.trust)).get("bundle"))?.string(), "genuine bundle");
  // A permission violation is not fatal: the connection still works.
  await exports.put("cluster-a.default.still-works", "yes");
});

bus("a roll-up header on a cluster's own key cannot purge other clusters' keys", async (ctx) => {
  const { a, admin } = ready(ctx);
  const rollup = headers();
  rollup.set("Nats-Rollup", "all");
  await assertRollupRefused(jetstream(a).publish(kvSubject(BUCKETS.exports, "cluster-a.default.web"), "wipe", { headers: rollup }));
  assert.is((await (await new Kvm(admin).open(BUCKETS.exports)).get("cluster-b.default.api"))?.string(), "b's api");
});

bus("the server refuses a cluster's stream purge, delete, update, create and message delete", async (ctx) => {
  const { a, admin } = ready(ctx);
  const stream = kvStream(BUCKETS.exports);
  const jsm = await jetstreamManager(a, { checkAPI: false });
  const before = (await (await jetstreamManager(admin)).streams.info(stream)).state.messages;

  await assertRefused(jsm.streams.purge(stream), `$JS.API.STREAM.PURGE.${stream}`);
  await assertRefused(jsm.streams.purge(stream, { filter: kvSubject(BUCKETS.exports, "cluster-b.>") }), `$JS.API.STREAM.PURGE.${stream}`);
  await assertRefused(jsm.streams.delete(stream), `$JS.API.STREAM.DELETE.${stream}`);
  await assertRefused(jsm.streams.deleteMessage(stream, 1), `$JS.API.STREAM.MSG.DELETE.${stream}`);
  await assertRefused(jsm.streams.add({ name: "KV_rogue", subjects: ["$KV.rogue.>"] }), "$JS.API.STREAM.CREATE.KV_rogue");
  await assertRefused(a.request(`$JS.API.STREAM.UPDATE.${stream}`, JSON.stringify({ name: stream, subjects: [">"] })), `$JS.API.STREAM.UPDATE.${stream}`);

  const after = await (await jetstreamManager(admin)).streams.info(stream);
  assert.is(after.state.messages, before);
  assert.is(after.config.allow_rollup_hdrs, false);
});

bus("a cluster reads every cluster's keys and the trust bundle, through the leader or any replica", async (ctx) => {
  const { a } = ready(ctx);
  for (const direct of [false, true]) {
    const kvm = new Kvm(a);
    const exports = await kvm.open(BUCKETS.exports, { allow_direct: direct });
    const trust = await kvm.open(BUCKETS.trust, { allow_direct: direct });
    assert.is((await exports.get("cluster-b.default.api"))?.string(), "b's api", `direct=${direct}`);
    assert.is((await exports.get("cluster-b.default.api", { revision: 1 }))?.string(), "b's api", `direct=${direct}`);
    assert.is((await trust.get("bundle"))?.string(), "genuine bundle", `direct=${direct}`);
  }
  const kvm = new Kvm(a);
  const exports = await kvm.open(BUCKETS.exports);
  assert.is((await firstWatched(exports, ">", (e) => e.key === "cluster-b.default.api")).string(), "b's api");
  assert.ok((await collect(await exports.keys())).includes("cluster-b.default.api"));
  assert.equal((await collect(await exports.history({ key: "cluster-b.>" }))).map((e) => e.key), ["cluster-b.default.api"]);
  assert.is((await firstWatched(await kvm.open(BUCKETS.trust), "bundle", () => true)).string(), "genuine bundle");
});

bus("a large watch is paced by flow control, which the cluster may acknowledge", async (ctx) => {
  const { a } = ready(ctx);
  const exports = await new Kvm(a).open(BUCKETS.exports);
  // The server asks a push consumer for flow control every few MiB delivered; unanswered, delivery stalls.
  const value = new Uint8Array(256 * 1024).fill(7);
  const count = 40;
  for (let i = 0; i < count; i++) await exports.put(`cluster-a.bulk.s${i}`, value);
  // The ordered push consumer kv.watch() builds, used directly to see its status.
  const consumer = await jetstream(a).consumers.getPushConsumer(kvStream(BUCKETS.exports), { filter_subjects: kvSubject(BUCKETS.exports, "cluster-a.bulk.>") });
  const messages = await consumer.consume();
  let flowControls = 0;
  const counting = (async () => {
    for await (const status of messages.status()) if (status.type === "flow_control") flowControls++;
  })();
  let seen = 0;
  await withDeadline(
    (async () => {
      for await (const m of messages) if (m.data.length === value.length && ++seen === count) break;
    })(),
    10_000,
    "every bulk value to be delivered",
  );
  messages.stop();
  await counting;
  assert.is(seen, count);
  assert.ok(flowControls > 0, "the server asked for flow control");
  for (let i = 0; i < count; i++) await exports.delete(`cluster-a.bulk.s${i}`);
});

bus("a cluster may delete a watch consumer on a bucket stream, as an ordered consumer does when it resets", async (ctx) => {
  const { a } = ready(ctx);
  const stream = kvStream(BUCKETS.exports);
  const consumer = await jetstream(a).consumers.getPushConsumer(stream, { filter_subjects: kvSubject(BUCKETS.exports, "cluster-a.>") });
  const info = await consumer.info();
  assert.ok(info.config.deliver_subject?.startsWith("_INBOX.cluster-a."), "watch deliveries use the cluster's inbox prefix");
  assert.ok(await consumer.delete());
});

bus("the server refuses a cluster's subscriptions outside its own inbox", async (ctx) => {
  const { a } = ready(ctx);
  for (const subject of ["_INBOX.cluster-b.>", "_INBOX.>", kvSubject(BUCKETS.exports, ">")]) {
    const sub = a.subscribe(subject);
    await a.flush();
    const closed = await sub.closed;
    assert.instance(closed, PermissionViolationError, subject);
    assert.is((closed as PermissionViolationError).operation, "subscription");
  }
});

bus("a push consumer aimed at another cluster's key, the trust bundle or the stream API writes nothing", async (ctx) => {
  const { a, admin } = ready(ctx);
  const clusters = await new Kvm(a).open(BUCKETS.clusters);
  await clusters.put("cluster-a.info", "payload a controls");
  const jsm = await jetstreamManager(a, { checkAPI: false });
  const targets = [kvSubject(BUCKETS.exports, "cluster-b.default.web"), kvSubject(BUCKETS.trust, "bundle"), `$JS.API.STREAM.DELETE.${kvStream(BUCKETS.trust)}`];
  const names: string[] = [];
  for (const [i, target] of targets.entries()) {
    // The server accepts such a consumer: the deliver subject is in the request body, out of reach of subject permissions.
    const created = await jsm.consumers.add(kvStream(BUCKETS.clusters), {
      name: `redirect-${i}`,
      filter_subject: kvSubject(BUCKETS.clusters, "cluster-a.info"),
      deliver_subject: target,
      ack_policy: AckPolicy.None,
      deliver_policy: DeliverPolicy.All,
    });
    names.push(created.name);
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  // Streams and the API are no delivery interest, so the consumers never deliver.
  for (const name of names) assert.is((await jsm.consumers.info(kvStream(BUCKETS.clusters), name)).delivered.consumer_seq, 0, name);
  for (const name of names) await jsm.consumers.delete(kvStream(BUCKETS.clusters), name);
  const asAdmin = new Kvm(admin);
  assert.is(await (await asAdmin.open(BUCKETS.exports)).get("cluster-b.default.web"), null);
  assert.is((await (await asAdmin.open(BUCKETS.trust)).get("bundle"))?.string(), "genuine bundle");
});

// --------------------------------------------------------------------------

interface AuthCtx {
  authority?: BusAuthority;
  nats?: NatsEnv;
}

const auth = suite<AuthCtx>("connections without valid bus credentials are refused", {});

auth.before(async (ctx) => {
  ctx.authority = await createBusAuthority({ clusterSet: "demo" });
  ctx.nats = await startNats({ serverConfig: serverAuthConfig(ctx.authority) });
});

auth.after(async (ctx) => {
  await ctx.nats?.stop();
});

function authEnv(ctx: AuthCtx): { authority: BusAuthority; nats: NatsEnv } {
  const { authority, nats } = ctx;
  if (!authority || !nats) throw new Error("suite setup did not complete");
  return { authority, nats };
}

async function assertConnectRefused(connecting: Promise<NatsConnection>): Promise<void> {
  let nc: NatsConnection | undefined;
  try {
    nc = await connecting;
  } catch (err) {
    assert.instance(err, AuthorizationError);
    return;
  }
  await nc.close();
  assert.unreachable("the server accepted the connection");
}

/** Re-signs a JWT after changing its claims, with a key that is not its issuer's. */
function forge(jwt: string, mutate: (claims: { nats: { pub?: { allow?: string[] } } }) => void, signer: KeyPair): string {
  const [header, payload] = jwt.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { nats: { pub?: { allow?: string[] } } };
  mutate(claims);
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const signature = Buffer.from(signer.sign(new TextEncoder().encode(`${header}.${body}`))).toString("base64url");
  return `${header}.${body}.${signature}`;
}

auth("a valid cluster credential connects", async (ctx) => {
  const { authority, nats } = authEnv(ctx);
  const nc = await connectAs(nats, await mintClusterCredentials(authority, "cluster-a"), "cluster-a");
  await nc.flush();
  await nc.close();
});

auth("a connection without credentials is refused", async (ctx) => {
  await assertConnectRefused(connect({ servers: authEnv(ctx).nats.urls }));
});

auth("credentials minted by another ClusterSet's operator are refused", async (ctx) => {
  const other = await createBusAuthority({ clusterSet: "demo" });
  await assertConnectRefused(connectAs(authEnv(ctx).nats, await mintClusterCredentials(other, "cluster-a"), "impostor"));
});

auth("a JWT whose permissions were widened and re-signed by another key is refused", async (ctx) => {
  const { authority, nats } = authEnv(ctx);
  const genuine = await mintClusterCredentials(authority, "cluster-a");
  const jwt = forge(genuine.jwt, (claims) => (claims.nats.pub = { allow: [">"] }), createAccount());
  const user = fromSeed(new TextEncoder().encode(genuine.seed));
  const forged: BusCredentials = { ...genuine, jwt, creds: new TextDecoder().decode(fmtCreds(jwt, user)) };
  await assertConnectRefused(connectAs(nats, forged, "forger"));
});

auth("a genuine JWT presented without its seed is refused", async (ctx) => {
  const { authority, nats } = authEnv(ctx);
  const genuine = await mintClusterCredentials(authority, "cluster-a");
  const thief = await mintClusterCredentials(authority, "cluster-b");
  const authenticator = jwtAuthenticator(genuine.jwt, new TextEncoder().encode(thief.seed));
  await assertConnectRefused(connect({ servers: nats.urls, authenticator, inboxPrefix: genuine.inboxPrefix }));
});

// --------------------------------------------------------------------------

interface R3Ctx {
  nats?: NatsEnv;
  connections: NatsConnection[];
}

const replicated = suite<R3Ctx>("least-privilege bus credentials on a 3-node cluster with R3 buckets", { connections: [] });

replicated.after(async (ctx) => {
  await Promise.all(ctx.connections.map((nc) => nc.close()));
  await ctx.nats?.stop();
});

replicated("each node enforces the same permissions and stream policy", async (ctx) => {
  const authority = await createBusAuthority({ clusterSet: "demo" });
  ctx.nats = await startNats({ nodes: 3, serverConfig: serverAuthConfig(authority) });
  const [n1, n2, n3] = ctx.nats.urls as [string, string, string];
  const admin = await connectAs(ctx.nats, await mintAdminCredentials(authority), "admin", n1);
  ctx.connections.push(admin);
  await ensureBuckets(admin, { replicas: 3 });
  const info = await (await jetstreamManager(admin)).streams.info(kvStream(BUCKETS.exports));
  assert.is(info.config.num_replicas, 3);

  const b = await connectAs(ctx.nats, await mintClusterCredentials(authority, "cluster-b"), "cluster-b", n2);
  const a = await connectAs(ctx.nats, await mintClusterCredentials(authority, "cluster-a"), "cluster-a", n3);
  ctx.connections.push(a, b);
  await (await new Kvm(b).open(BUCKETS.exports)).put("cluster-b.default.web", "b");
  const exports = await new Kvm(a).open(BUCKETS.exports);
  await exports.put("cluster-a.default.web", "a");
  await assertRefused(exports.put("cluster-b.default.web", "forged"), kvSubject(BUCKETS.exports, "cluster-b.default.web"));
  const rollup = headers();
  rollup.set("Nats-Rollup", "all");
  await assertRollupRefused(jetstream(a).publish(kvSubject(BUCKETS.exports, "cluster-a.default.web"), "wipe", { headers: rollup }));
  assert.is((await exports.get("cluster-b.default.web"))?.string(), "b");
});

bus.run();
auth.run();
replicated.run();
