import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  MalformedInputError,
  RootCa,
  RootRotation,
  RotationRefusedError,
  TrustOptionsError,
  acceptSignedBundle,
  type IntermediateCa,
  type IssuedLeaf,
  type TrustBundle,
} from "../../trust/index.ts";
import { FakeClock } from "../support/tls-fixtures.ts";

const TD = "example.org";
const CLUSTERS = ["a", "b"] as const;

interface Ctx {
  clock: FakeClock;
  oldRoot: RootCa;
  newRoot: RootCa;
  rotation: RootRotation;
  installed: Record<string, TrustBundle>;
  inters: Record<string, IntermediateCa>;
  leaves: Record<string, IssuedLeaf>;
  /** a's leaf from before the rotation (chains to the old root). */
  oldLeafA: IssuedLeaf;
}

/** Persists and restores the machine, as a controller would between every step. */
function reload(ctx: Ctx): void {
  ctx.rotation = RootRotation.fromJSON(JSON.stringify(ctx.rotation.toJSON()), { clock: ctx.clock });
}

function refused(fn: () => unknown, step: string, pathPart: string): RotationRefusedError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, RotationRefusedError);
    const r = err as RotationRefusedError;
    assert.is(r.code, "FEDGATE_TRUST_ROTATION_REFUSED");
    assert.is(r.step, step);
    assert.ok(r.blockers.some((b) => b.path.includes(pathPart)), `expected a blocker on ${pathPart}, got ${JSON.stringify(r.blockers)}`);
    return r;
  }
  throw new Error(`step ${step} was not refused`);
}

async function refusedAsync(p: Promise<unknown>, step: string, pathPart: string): Promise<void> {
  const thrown = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  refused(() => {
    if (thrown instanceof Error) throw thrown;
    if (thrown !== undefined) throw new Error("rejected with a non-Error value", { cause: thrown });
  }, step, pathPart);
}

const rot = suite("root rotation state machine", {} as Ctx);

rot.before(async (ctx) => {
  ctx.clock = new FakeClock(new Date("2030-01-01T00:00:00Z"));
  ctx.oldRoot = await RootCa.create({ trustDomain: TD, clock: ctx.clock });
  ctx.newRoot = await RootCa.create({ trustDomain: TD, clock: ctx.clock });
  ctx.rotation = RootRotation.create({ trustDomain: TD, root: ctx.oldRoot.certificate, clusters: [...CLUSTERS], clock: ctx.clock });
  ctx.installed = {};
  ctx.inters = {};
  ctx.leaves = {};
  for (const c of CLUSTERS) {
    ctx.installed[c] = ctx.rotation.currentBundle();
    ctx.inters[c] = await ctx.oldRoot.issueIntermediate({ cluster: c });
    ctx.leaves[c] = await ctx.inters[c].issueLeaf();
    ctx.rotation.recordIntermediate(c, ctx.inters[c].certificate);
    ctx.rotation.recordLeaf(c, ctx.leaves[c]);
  }
  ctx.oldLeafA = ctx.leaves.a!;
});

rot("starts stable, with a bundle holding only the active root", (ctx) => {
  assert.is(ctx.rotation.phase, "stable");
  assert.equal(ctx.rotation.currentBundle().certificates.map((c) => c.fingerprint), [ctx.oldRoot.fingerprint]);
  refused(() => ctx.rotation.startReissuing(), "start-reissuing", "phase");
  refused(() => ctx.rotation.complete(), "complete", "phase");
});

rot("refuses to begin with the wrong current root or with the active root as the new one", async (ctx) => {
  await refusedAsync(ctx.rotation.beginRotation({ currentRoot: ctx.newRoot, newRoot: ctx.newRoot }), "begin", "currentRoot");
  await refusedAsync(ctx.rotation.beginRotation({ currentRoot: ctx.oldRoot, newRoot: ctx.oldRoot }), "begin", "newRoot");
  assert.is(ctx.rotation.phase, "stable");
});

rot("begins: publishes old+new signed by the old root; refuses reissuing until every cluster trusts the new root", async (ctx) => {
  const signed = await ctx.rotation.beginRotation({ currentRoot: ctx.oldRoot, newRoot: ctx.newRoot });
  reload(ctx);
  assert.is(ctx.rotation.phase, "adding-root");
  const accepted = acceptSignedBundle(signed, { current: ctx.installed.a!, now: ctx.clock.now() });
  assert.equal(accepted.bundle.certificates.map((c) => c.fingerprint), [ctx.oldRoot.fingerprint, ctx.newRoot.fingerprint]);
  ctx.installed.a = accepted.bundle;
  ctx.rotation.recordBundleInstalled("a", accepted.bundle);
  reload(ctx);
  const r = refused(() => ctx.rotation.startReissuing(), "start-reissuing", "clusters.b");
  assert.not.ok(r.blockers.some((b) => b.path === "clusters.a"), "cluster a is ready");
  await refusedAsync(ctx.rotation.reissueIntermediate({ newRoot: ctx.newRoot, cluster: "a" }), "reissue", "clusters.b");
  // Recording an intermediate under the new root before reissuing is refused too.
  const early = await ctx.newRoot.issueIntermediate({ cluster: "a" });
  refused(() => ctx.rotation.recordIntermediate("a", early.certificate), "record-intermediate", "clusters.a");
  ctx.installed.b = acceptSignedBundle(signed, { current: ctx.installed.b!, now: ctx.clock.now() }).bundle;
  ctx.rotation.recordBundleInstalled("b", ctx.installed.b);
  ctx.rotation.startReissuing();
  reload(ctx);
  assert.is(ctx.rotation.phase, "reissuing");
});

rot("reissues intermediates then leaves; refuses to retire while any live identity chains only to the old root", async (ctx) => {
  await refusedAsync(ctx.rotation.retireOldRoot({ oldRoot: ctx.oldRoot, newRoot: ctx.newRoot }), "retire", "clusters.a");
  ctx.inters.a = await ctx.rotation.reissueIntermediate({ newRoot: ctx.newRoot, cluster: "a" });
  reload(ctx);
  // a's intermediate moved, but its leaf still chains to the old root.
  const blockers = ctx.rotation.blockers("retire");
  assert.ok(blockers.some((b) => b.path === "clusters.a.leaves" && b.message.includes("/cluster/a/gateway")));
  assert.ok(blockers.some((b) => b.path === "clusters.b.intermediates"));
  ctx.leaves.a = await ctx.inters.a.issueLeaf();
  ctx.rotation.recordLeaf("a", ctx.leaves.a);
  ctx.inters.b = await ctx.rotation.reissueIntermediate({ newRoot: ctx.newRoot, cluster: "b" });
  reload(ctx);
  await refusedAsync(ctx.rotation.retireOldRoot({ oldRoot: ctx.oldRoot, newRoot: ctx.newRoot }), "retire", "clusters.b.leaves");
  // An old-root leaf that simply expires stops blocking: b's leaf lives 24 h, so a machine 25 h later sees no blocker.
  const later = RootRotation.fromJSON(ctx.rotation.toJSON(), { clock: new FakeClock(ctx.clock.now().getTime() + 25 * 3_600_000) });
  assert.equal(later.blockers("retire"), [], "expired identities anchor nothing");
  ctx.leaves.b = await ctx.inters.b.issueLeaf();
  ctx.rotation.recordLeaf("b", ctx.leaves.b);
  assert.equal(ctx.rotation.blockers("retire"), []);
});

rot("retires: publishes new-only signed by both roots; refuses completion until every cluster installed it", async (ctx) => {
  const signed = await ctx.rotation.retireOldRoot({ oldRoot: ctx.oldRoot, newRoot: ctx.newRoot });
  reload(ctx);
  assert.is(ctx.rotation.phase, "retiring-old");
  const lateOld = await ctx.oldRoot.issueIntermediate({ cluster: "a" });
  refused(() => ctx.rotation.recordIntermediate("a", lateOld.certificate), "record-intermediate", "clusters.a");
  refused(() => ctx.rotation.recordLeaf("a", ctx.oldLeafA), "record-leaf", "clusters.a");
  for (const c of CLUSTERS) {
    refused(() => ctx.rotation.complete(), "complete", `clusters.${c}`);
    ctx.installed[c] = acceptSignedBundle(signed, { current: ctx.installed[c]!, now: ctx.clock.now() }).bundle;
    ctx.rotation.recordBundleInstalled(c, ctx.installed[c]);
  }
  ctx.rotation.complete();
  reload(ctx);
  assert.is(ctx.rotation.phase, "stable");
  assert.is(ctx.rotation.activeRoot.fingerprint, ctx.newRoot.fingerprint);
  assert.is(ctx.rotation.nextRoot, undefined);
  assert.equal(ctx.rotation.currentBundle().certificates.map((c) => c.fingerprint), [ctx.newRoot.fingerprint]);
  assert.is(ctx.rotation.currentBundle().sequence, 3);
});

const persist = suite("rotation state persistence");

persist("restores from JSON text or object, and rejects garbled or inconsistent state", async () => {
  const root = await RootCa.create({ trustDomain: TD });
  const m = RootRotation.create({ trustDomain: TD, root: root.certificate, clusters: ["a"] });
  const json = m.toJSON();
  assert.is(RootRotation.fromJSON(JSON.stringify(json)).phase, "stable");
  assert.is(RootRotation.fromJSON(json).activeRoot.fingerprint, root.fingerprint);
  for (const bad of ["{", "null", JSON.stringify({ ...json, v: 2 }), JSON.stringify({ ...json, phase: "adding-root" }), JSON.stringify({ ...json, activeRoot: "junk" }), JSON.stringify({ ...json, clusters: { "Bad Name": json.clusters.a } })]) {
    assert.throws(() => RootRotation.fromJSON(bad), (err: unknown) => err instanceof MalformedInputError, bad.slice(0, 60));
  }
});

persist("rejects bad construction options and unknown clusters with typed errors", async () => {
  const root = await RootCa.create({ trustDomain: TD });
  assert.throws(() => RootRotation.create({ trustDomain: TD, root: root.certificate, clusters: ["a", "a", "B"] }), (err: unknown) => err instanceof TrustOptionsError && err.problems.length === 2);
  const m = RootRotation.create({ trustDomain: TD, root: root.certificate, clusters: ["a"] });
  assert.throws(() => m.recordBundleInstalled("zzz", m.currentBundle()), (err: unknown) => err instanceof TrustOptionsError);
  const foreign = await RootCa.create({ trustDomain: TD });
  const i = await foreign.issueIntermediate({ cluster: "a" });
  assert.throws(() => m.recordIntermediate("a", i.certificate), (err: unknown) => err instanceof RotationRefusedError);
});

rot.run();
persist.run();
