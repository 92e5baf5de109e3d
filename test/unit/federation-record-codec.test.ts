import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  DEFAULT_BUCKETS,
  MAX_RECORD_BYTES,
  createRecordVerifier,
  decodeRecord,
  encodeRecord,
  type RecordSigner,
  type ServiceExportRecord,
} from "../../federation/internal.ts";
import { createClusterSetPki, type ClusterSetPki } from "../support/clusterset-pki.ts";

const EXPORTS = DEFAULT_BUCKETS.exports;

const web: ServiceExportRecord = {
  namespace: "shop",
  name: "web",
  ports: [{ name: "http", protocol: "TCP", port: 80, appProtocol: "http" }],
  type: "ClusterSetIP",
  sessionAffinity: "None",
  exportCreatedAt: "2026-01-01T00:00:00.000Z",
  readyEndpoints: [{ zone: "z1", ready: 3 }],
  gateway: { host: "10.0.0.1", port: 15443 },
};

const codec = suite<{ pki: ClusterSetPki; other: ClusterSetPki; revoked: Set<string> }>("bus record codec", {} as never);

codec.before(async (ctx) => {
  ctx.pki = await createClusterSetPki(["cluster-a", "cluster-b"]);
  ctx.other = await createClusterSetPki(["cluster-a"], "elsewhere.test");
  ctx.revoked = new Set();
});

function encode(signer: RecordSigner, key: string, body: unknown = web, bucket = EXPORTS): Uint8Array {
  return encodeRecord({ signer, bucket, key, kind: "export", generation: 1, body: body as ServiceExportRecord });
}

function decode(ctx: { pki: ClusterSetPki; revoked: Set<string> }, key: string, bytes: Uint8Array, bucket = EXPORTS) {
  const verifier = createRecordVerifier({ bundle: () => ctx.pki.bundle, revokedClusters: () => ctx.revoked });
  return decodeRecord({ buckets: DEFAULT_BUCKETS, bucket, key, bytes, verifier });
}

function edit(bytes: Uint8Array, change: (record: Record<string, unknown>) => void): Uint8Array {
  const record = JSON.parse(Buffer.from(bytes).toString()) as Record<string, unknown>;
  change(record);
  return Buffer.from(JSON.stringify(record));
}

codec("a record signed by its origin decodes to the same body", (ctx) => {
  const a = ctx.pki.identity("cluster-a").signer;
  const result = decode(ctx, "cluster-a.shop.web", encode(a, "cluster-a.shop.web"));
  assert.ok(result.ok);
  if (result.ok) {
    assert.is(result.record.origin, "cluster-a");
    assert.equal(result.record.body, web);
  }
});

codec("ignores fields a newer writer added, yet checks the signature over them", (ctx) => {
  const a = ctx.pki.identity("cluster-a").signer;
  const withExtra = encode(a, "cluster-a.shop.web", { ...web, futureField: { x: 1 } });
  const result = decode(ctx, "cluster-a.shop.web", withExtra);
  assert.ok(result.ok);
  if (result.ok) assert.not.ok("futureField" in result.record.body);
  const stripped = edit(withExtra, (r) => delete (r["body"] as Record<string, unknown>)["futureField"]);
  assert.equal(decode(ctx, "cluster-a.shop.web", stripped), { ok: false, reason: "signature", detail: "signature does not verify" });
});

const rejections: { name: string; make: (ctx: { pki: ClusterSetPki; other: ClusterSetPki; revoked: Set<string> }) => { key: string; bytes: Uint8Array; bucket?: string }; reason: string }[] = [
  { name: "bytes that are not JSON", make: () => ({ key: "cluster-a.shop.web", bytes: Buffer.from([0xff, 0xfe, 0x00, 0x7b]) }), reason: "malformed" },
  { name: "a JSON array", make: () => ({ key: "cluster-a.shop.web", bytes: Buffer.from("[1,2]") }), reason: "malformed" },
  { name: "an oversized record", make: () => ({ key: "cluster-a.shop.web", bytes: Buffer.alloc(MAX_RECORD_BYTES + 1, 0x20) }), reason: "malformed" },
  {
    name: "a v2 record",
    make: (ctx) => ({ key: "cluster-a.shop.web", bytes: edit(encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.web"), (r) => (r["v"] = 2)) }),
    reason: "unsupported-version",
  },
  {
    name: "a record with a wrong schema",
    make: (ctx) => ({ key: "cluster-a.shop.web", bytes: encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.web", { ...web, ports: [{ protocol: "TCP", port: 70_000 }] }) }),
    reason: "schema",
  },
  {
    name: "a forged record (body changed after signing)",
    make: (ctx) => ({
      key: "cluster-a.shop.web",
      bytes: edit(encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.web"), (r) => ((r["body"] as Record<string, unknown>)["gateway"] = { host: "6.6.6.6", port: 15443 })),
    }),
    reason: "signature",
  },
  {
    name: "a record replayed under another key",
    make: (ctx) => ({ key: "cluster-a.shop.web2", bytes: encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.web") }),
    reason: "signature",
  },
  {
    name: "a record signed under another trust domain",
    make: (ctx) => ({ key: "cluster-a.shop.web", bytes: encode(ctx.other.identity("cluster-a").signer, "cluster-a.shop.web") }),
    reason: "signature",
  },
  {
    name: "a record claiming another cluster's origin",
    make: (ctx) => ({
      key: "cluster-b.shop.web",
      bytes: edit(encode(ctx.pki.identity("cluster-a").signer, "cluster-b.shop.web"), (r) => (r["origin"] = "cluster-b")),
    }),
    reason: "signature",
  },
  {
    name: "a correctly signed record under another cluster's key",
    make: (ctx) => ({ key: "cluster-b.shop.web", bytes: encode(ctx.pki.identity("cluster-a").signer, "cluster-b.shop.web") }),
    reason: "unauthorized",
  },
  {
    name: "an export whose key names another service",
    make: (ctx) => ({ key: "cluster-a.shop.cart", bytes: encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.cart") }),
    reason: "unauthorized",
  },
  {
    name: "an export record in the clusters bucket",
    make: (ctx) => ({ key: "cluster-a.info", bucket: DEFAULT_BUCKETS.clusters, bytes: encode(ctx.pki.identity("cluster-a").signer, "cluster-a.info", web, DEFAULT_BUCKETS.clusters) }),
    reason: "unauthorized",
  },
];

for (const c of rejections) {
  codec(`rejects ${c.name} as ${c.reason}`, (ctx) => {
    const { key, bytes, bucket } = c.make(ctx);
    const result = decode(ctx, key, bytes, bucket);
    assert.is(result.ok, false);
    if (!result.ok) assert.is(result.reason, c.reason, result.detail);
  });
}

codec("rejects a revoked cluster's records at once, even with its chain cached", (ctx) => {
  const a = ctx.pki.identity("cluster-a").signer;
  assert.ok(decode(ctx, "cluster-a.shop.web", encode(a, "cluster-a.shop.web")).ok);
  ctx.revoked.add("cluster-a");
  try {
    const result = decode(ctx, "cluster-a.shop.web", encode(a, "cluster-a.shop.web"));
    assert.equal(result, { ok: false, reason: "signature", detail: "cluster cluster-a is revoked" });
  } finally {
    ctx.revoked.clear();
  }
});

codec("never throws on random mutations of a valid record", (ctx) => {
  const bytes = encode(ctx.pki.identity("cluster-a").signer, "cluster-a.shop.web");
  let seed = 42;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  let rejected = 0;
  for (let i = 0; i < 300; i++) {
    const mutated = Buffer.from(bytes);
    for (let j = 0; j < 1 + Math.floor(random() * 4); j++) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
    const result = decode(ctx, "cluster-a.shop.web", mutated);
    // A mutation may only pass if it left the signed content as it was (say, a byte inside the signature's
    // unused base64 padding bits); then it must decode to exactly the original.
    if (result.ok) assert.equal([result.record.origin, result.record.body], ["cluster-a", web]);
    else rejected++;
  }
  assert.ok(rejected > 250, `only ${rejected} of 300 mutations rejected`);
});

codec.run();
