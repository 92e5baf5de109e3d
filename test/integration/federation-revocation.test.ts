import { suite } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_BUCKETS, REVOCATIONS_KEY, type Exchange } from "../../federation/index.ts";
import { RootCa, revocationsRecord } from "../../trust/index.ts";
import { waitFor } from "../env/index.ts";
import { ExchangeHarness, exportOf } from "../support/exchange-harness.ts";

const LEASE_TTL_MS = 30_000;
const until = (what: string, probe: () => boolean, timeoutMs = 20_000) => waitFor(what, async () => (probe() ? true : undefined), { timeoutMs, intervalMs: 20 });

interface Ctx {
  h: ExchangeHarness;
  a: Exchange;
  b: Exchange;
  c: Exchange;
}

const revocation = suite<Ctx>("revoking a cluster over a real nats-server: root-signed CRLs on the trust bucket", {} as never);

revocation.before(async (ctx) => {
  ctx.h = await ExchangeHarness.start({ clusters: ["cluster-a", "cluster-b", "cluster-c"], leaseTtlMs: LEASE_TTL_MS });
  ctx.a = await ctx.h.startExchange("cluster-a");
  ctx.b = await ctx.h.startExchange("cluster-b");
  ctx.c = await ctx.h.startExchange("cluster-c");
});
revocation.after(async (ctx) => {
  await ctx.h?.stop();
});

const exporters = (e: Exchange) => (e.service("shop", "web")?.exports ?? []).map((x) => x.cluster).sort();

revocation("forged and stale revocations are refused and change nothing; a real one drops the revoked cluster's records everywhere", async ({ h, a, b, c }) => {
  await a.publishExport(exportOf("shop", "web"));
  await b.publishExport(exportOf("shop", "web"));
  await until("C sees A's and B's exports", () => exporters(c).join() === "cluster-a,cluster-b");
  const trustKv = await h.rawKv("admin", DEFAULT_BUCKETS.trust);
  const aIntermediate = h.pki.identity("cluster-a").intermediate.certificate;

  // A revocation signed by a root nobody trusts (whoever can write the key cannot forge the root's signature).
  const rogue = await RootCa.create({ trustDomain: h.pki.trustDomain });
  const rogueA = await rogue.issueIntermediate({ cluster: "cluster-a" });
  const forged = await rogue.issueRevocationList({ intermediates: [rogueA.certificate], crlNumber: 100 });
  const rejectedBefore = c.stats().rejected.trust;
  await trustKv.put(REVOCATIONS_KEY, revocationsRecord(h.pki.trustDomain, [forged]));
  await until("C refuses the forged list", () => c.stats().rejected.trust === rejectedBefore + 1);
  assert.is(c.revocations().lists.length, 0, "nothing installed");
  assert.is(exporters(c).join(), "cluster-a,cluster-b");

  // The genuine list, signed by the ClusterSet root.
  const crl = await h.pki.root.issueRevocationList({ intermediates: [aIntermediate], crlNumber: 2 });
  await trustKv.put(REVOCATIONS_KEY, revocationsRecord(h.pki.trustDomain, [crl]));
  for (const [name, e] of [["B", b], ["C", c]] as const) {
    await until(`${name} installs the list and drops A's export`, () => e.revocations().lists.length === 1 && exporters(e).join() === "cluster-b");
  }
  assert.is(String(c.revocations().lists[0]?.crlNumber), "2");

  // A keeps writing; its records are refused by signature, B's keep flowing.
  const signatureBefore = c.stats().rejected.signature;
  await a.publishExport(exportOf("shop", "web", { readyEndpoints: [{ zone: "zone-a", ready: 9 }] }));
  await b.publishExport(exportOf("shop", "web", { readyEndpoints: [{ zone: "zone-a", ready: 4 }] }));
  await until("C refuses A's new record and applies B's", () => c.stats().rejected.signature > signatureBefore && c.service("shop", "web")?.exports[0]?.readyEndpoints[0]?.ready === 4);
  assert.is(exporters(c).join(), "cluster-b");

  // An older genuine list (a replay of an earlier state) is stale: A stays revoked.
  const older = await h.pki.root.issueRevocationList({ intermediates: [], crlNumber: 1 });
  const trustBefore = c.stats().rejected.trust;
  await trustKv.put(REVOCATIONS_KEY, revocationsRecord(h.pki.trustDomain, [older]));
  await until("C refuses the stale list", () => c.stats().rejected.trust === trustBefore + 1);
  assert.ok(c.revocations().isRevoked(aIntermediate, h.pki.root.certificate), "A is still revoked");
  assert.is(exporters(c).join(), "cluster-b");

  // Junk on the key is refused too.
  const junkBefore = b.stats().rejected.trust;
  await trustKv.put(REVOCATIONS_KEY, "{\"v\":1,\"kind\":\"fedgate.revocations\"}");
  await until("B refuses junk", () => b.stats().rejected.trust === junkBefore + 1);
  assert.ok(b.revocations().isRevoked(aIntermediate, h.pki.root.certificate));

  // A cluster that joins later installs the list from KV state and never sees A's export.
  await trustKv.put(REVOCATIONS_KEY, revocationsRecord(h.pki.trustDomain, [crl]));
  await h.stopExchange("cluster-c");
  const late = await h.startExchange("cluster-c");
  assert.is(late.revocations().lists.length, 1);
  assert.is(exporters(late).join(), "cluster-b");
});

revocation.run();
