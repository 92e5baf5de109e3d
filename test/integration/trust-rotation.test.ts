import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  RootCa,
  RootRotation,
  RotationRefusedError,
  TrustBundle,
  acceptSignedBundle,
  tlsIdentityOf,
  type IntermediateCa,
  type IssuedLeaf,
  type SignedBundle,
} from "../../trust/index.ts";
import { mtlsRequest, startMtlsServer, type MtlsServer } from "../support/tls-harness.ts";

/**
 * Root rotation across three simulated clusters, each with its own gateway
 * identity, installed bundle and a live mTLS server. At every step, including
 * the states where only some clusters have moved, every ordered pair of
 * gateways completes a real mTLS handshake (both directions are covered by
 * the ordered pairs), and the steps that would break a pair are refused.
 */

const TD = "example.org";
const NAMES = ["a", "b", "c"] as const;
type Name = (typeof NAMES)[number];

interface Cluster {
  name: Name;
  bundle: TrustBundle;
  intermediate: IntermediateCa;
  leaf: IssuedLeaf;
  server: MtlsServer;
}

interface Ctx {
  oldRoot: RootCa;
  newRoot: RootCa;
  rotation: RootRotation;
  clusters: Record<Name, Cluster>;
  /** Steps at which all pairs were checked, for the final tally. */
  checkpoints: string[];
}

const spiffe = (n: Name) => `spiffe://${TD}/cluster/${n}/gateway`;

/** Every ordered pair (client -> server) must complete mTLS and exchange application data. */
async function allPairsHandshake(ctx: Ctx, step: string): Promise<void> {
  for (const from of NAMES) {
    for (const to of NAMES) {
      if (from === to) continue;
      const client = ctx.clusters[from];
      const server = ctx.clusters[to];
      const o = await mtlsRequest({ port: server.server.port, identity: tlsIdentityOf(client.leaf), bundle: client.bundle });
      assert.is(o.error, undefined, `[${step}] ${from} -> ${to}: ${o.error?.message}`);
      assert.is(o.reply, `hello ${spiffe(from)} from ${to}`, `[${step}] ${from} -> ${to}`);
      assert.is(o.serverIdentity?.spiffeId, spiffe(to));
    }
  }
  ctx.checkpoints.push(step);
}

/** Persist and restore the state machine, as a controller would between steps. */
function reload(ctx: Ctx): void {
  ctx.rotation = RootRotation.fromJSON(JSON.parse(JSON.stringify(ctx.rotation.toJSON())) as unknown);
}

function install(ctx: Ctx, name: Name, signed: SignedBundle): void {
  const c = ctx.clusters[name];
  const res = acceptSignedBundle(JSON.stringify(signed), { current: c.bundle });
  assert.ok(res.changed);
  c.bundle = res.bundle;
  c.server.update({ bundle: res.bundle });
  ctx.rotation.recordBundleInstalled(name, res.bundle);
  reload(ctx);
}

async function expectRefused(work: () => unknown, step: string, cluster: Name): Promise<void> {
  let err: unknown;
  try {
    await work();
  } catch (e) {
    err = e;
  }
  assert.instance(err, RotationRefusedError, `${step} should be refused`);
  const r = err as RotationRefusedError;
  assert.is(r.step, step);
  assert.ok(r.blockers.some((b) => b.path.startsWith(`clusters.${cluster}`)), `${step} blockers should name cluster ${cluster}: ${JSON.stringify(r.blockers)}`);
}

const rotation = suite("root rotation across 3 clusters with live mTLS", {} as Ctx);

rotation.before(async (ctx) => {
  ctx.checkpoints = [];
  ctx.oldRoot = await RootCa.create({ trustDomain: TD });
  ctx.newRoot = await RootCa.create({ trustDomain: TD });
  ctx.rotation = RootRotation.create({ trustDomain: TD, root: ctx.oldRoot.certificate, clusters: [...NAMES] });
  const bundle = ctx.rotation.currentBundle();
  const clusters = {} as Record<Name, Cluster>;
  for (const name of NAMES) {
    const intermediate = await ctx.oldRoot.issueIntermediate({ cluster: name });
    const leaf = await intermediate.issueLeaf();
    ctx.rotation.recordIntermediate(name, intermediate.certificate);
    ctx.rotation.recordLeaf(name, leaf);
    const server = await startMtlsServer({ name, identity: tlsIdentityOf(leaf), bundle });
    clusters[name] = { name, bundle, intermediate, leaf, server };
  }
  ctx.clusters = clusters;
});

rotation.after(async (ctx) => {
  await Promise.all(Object.values(ctx.clusters ?? {}).map((c) => c.server.close()));
});

rotation("stable: every pair completes mTLS under the old root", async (ctx) => {
  await allPairsHandshake(ctx, "stable");
});

rotation("adding-root: clusters install old+new one by one; pairs keep working; reissuing is refused until all have", async (ctx) => {
  const signed = await ctx.rotation.beginRotation({ currentRoot: ctx.oldRoot, newRoot: ctx.newRoot });
  reload(ctx);
  await allPairsHandshake(ctx, "adding-root: announced, nobody installed");
  for (const [i, name] of NAMES.entries()) {
    install(ctx, name, signed);
    await allPairsHandshake(ctx, `adding-root: ${NAMES.slice(0, i + 1).join("+")} installed old+new`);
    if (i < NAMES.length - 1) {
      const waiting = NAMES[NAMES.length - 1]!;
      await expectRefused(() => ctx.rotation.startReissuing(), "start-reissuing", waiting);
      await expectRefused(() => ctx.rotation.reissueIntermediate({ newRoot: ctx.newRoot, cluster: name }), "reissue", waiting);
    }
  }
  ctx.rotation.startReissuing();
  reload(ctx);
  assert.is(ctx.rotation.phase, "reissuing");
});

rotation("reissuing: intermediates then leaves move to the new root cluster by cluster; pairs keep working; retiring is refused until all moved", async (ctx) => {
  for (const name of NAMES) {
    const c = ctx.clusters[name];
    c.intermediate = await ctx.rotation.reissueIntermediate({ newRoot: ctx.newRoot, cluster: name });
    reload(ctx);
    await allPairsHandshake(ctx, `reissuing: ${name} has a new intermediate, old leaf`);
    await expectRefused(() => ctx.rotation.retireOldRoot({ oldRoot: ctx.oldRoot, newRoot: ctx.newRoot }), "retire", name);
    c.leaf = await c.intermediate.issueLeaf();
    c.server.update({ identity: tlsIdentityOf(c.leaf) });
    ctx.rotation.recordLeaf(name, c.leaf);
    reload(ctx);
    await allPairsHandshake(ctx, `reissuing: ${name} serves a new-root leaf`);
  }
  assert.equal(ctx.rotation.blockers("retire"), []);
});

rotation("retiring-old: clusters install new-only one by one; pairs keep working; completion is refused until all have", async (ctx) => {
  const signed = await ctx.rotation.retireOldRoot({ oldRoot: ctx.oldRoot, newRoot: ctx.newRoot });
  reload(ctx);
  assert.is(ctx.rotation.phase, "retiring-old");
  await allPairsHandshake(ctx, "retiring-old: announced, nobody installed");
  for (const [i, name] of NAMES.entries()) {
    install(ctx, name, signed);
    assert.equal(ctx.clusters[name].bundle.certificates.map((c) => c.fingerprint), [ctx.newRoot.fingerprint]);
    await allPairsHandshake(ctx, `retiring-old: ${NAMES.slice(0, i + 1).join("+")} installed new-only`);
    if (i < NAMES.length - 1) await expectRefused(() => ctx.rotation.complete(), "complete", NAMES[NAMES.length - 1]!);
  }
  ctx.rotation.complete();
  reload(ctx);
  assert.is(ctx.rotation.phase, "stable");
  assert.is(ctx.rotation.activeRoot.fingerprint, ctx.newRoot.fingerprint);
  await allPairsHandshake(ctx, "stable again under the new root");
});

rotation("the refusals guard real breakage: had a cluster dropped the old root while a peer still served an old-root leaf, their handshake fails", async (ctx) => {
  // Reconstruct the forbidden state on the side: b trusts only the new root, a serves an old-root leaf.
  const oldInter = await ctx.oldRoot.issueIntermediate({ cluster: "a" });
  const oldLeaf = await oldInter.issueLeaf();
  const server = await startMtlsServer({ name: "a-old", identity: tlsIdentityOf(oldLeaf), bundle: TrustBundle.create({ trustDomain: TD, certificates: [ctx.oldRoot.certificate, ctx.newRoot.certificate], sequence: 99 }) });
  try {
    const o = await mtlsRequest({ port: server.port, identity: tlsIdentityOf(ctx.clusters.b.leaf), bundle: ctx.clusters.b.bundle });
    assert.ok(o.error, "b (new root only) cannot verify a's old-root leaf");
    assert.is(o.reply, "");
  } finally {
    await server.close();
  }
  // 1 stable + 4 adding-root + 6 reissuing + 4 retiring-old + 1 final = 16 steps, 6 ordered pairs each.
  assert.is(ctx.checkpoints.length, 16, ctx.checkpoints.join("\n"));
});

rotation.run();
