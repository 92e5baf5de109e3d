import { suite } from "uvu";
import { sleep } from "../../common/index.ts";
import * as assert from "uvu/assert";
import { DEFAULT_BUCKETS, Exchange } from "../../federation/index.ts";
import { createClusterSetPki, type ClusterSetPki } from "../support/clusterset-pki.ts";
import { exportOf, testRegistration } from "../support/exchange-harness.ts";
import { MemoryBus, MemoryStore } from "../support/memory-bus.ts";

// The exchange's resync and lease logic against an in-memory bus that can stall a watch or refuse a write on demand.
/** Short, so the stalled replays are replaced within the test's time (the default is 10 s). */
const WATCH_STALL_MS = 1_500;

async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function newExchange(pki: ClusterSetPki, store: MemoryStore, name: string, leaseTtlMs: number): { exchange: Exchange; bus: MemoryBus } {
  const bus = new MemoryBus(store);
  const exchange = new Exchange({
    bus,
    signer: pki.identity(name).signer,
    trustBundle: pki.bundle,
    leaseTtlMs,
    watchStallMs: WATCH_STALL_MS,
    registration: testRegistration(pki, name),
  });
  return { exchange, bus };
}

const test = suite<{ pki: ClusterSetPki; running: Exchange[] }>("exchange resync and leases (in-memory bus)", {} as never);

test.before(async (ctx) => {
  ctx.pki = await createClusterSetPki(["cluster-a", "cluster-b"]);
});
test.before.each((ctx) => {
  ctx.running = [];
});
test.after.each(async (ctx) => {
  for (const e of ctx.running) await e.close();
});

test("a watch whose replay never completes is replaced, so the resync (here: start) finishes and holds everything", async (ctx) => {
  const store = new MemoryStore();
  // A renews every second: live updates keep reaching the stalled watches of the clusters bucket, yet they must be replaced.
  const a = newExchange(ctx.pki, store, "cluster-a", 3_000).exchange;
  ctx.running.push(a);
  await a.start();
  await a.publishExport(exportOf("shop", "web"));
  await a.publishExport(exportOf("shop", "cart"));
  store.stallWatches(DEFAULT_BUCKETS.exports, 1);
  store.stallWatches(DEFAULT_BUCKETS.clusters, 1);
  const b = newExchange(ctx.pki, store, "cluster-b", 3_000).exchange;
  ctx.running.push(b);
  // Unreplaced, the stalled watch holds this start (and every later resync queued behind it) forever.
  await within("B to start", b.start(), 30_000);
  assert.ok(b.service("shop", "web"), "B holds A's web export");
  assert.ok(b.service("shop", "cart"), "B holds A's cart export");
  const stalled = store.watchesOpened.filter((w) => w.stalled);
  assert.equal(stalled.map((w) => w.bucket).sort(), [DEFAULT_BUCKETS.clusters, DEFAULT_BUCKETS.exports].sort(), "a watch of each bucket was stalled");
  assert.ok(stalled.every((w) => w.stopped()), "the stalled watches were stopped");
  assert.ok(b.clusters().find((c) => c.name === "cluster-a")?.leaseLive, "B holds A's live lease");
});

test("after a bus outage, a lease write the server refuses is retried before peers judge: nobody is evicted", async (ctx) => {
  const LEASE_TTL_MS = 4_000;
  const store = new MemoryStore();
  const a = newExchange(ctx.pki, store, "cluster-a", LEASE_TTL_MS);
  const b = newExchange(ctx.pki, store, "cluster-b", LEASE_TTL_MS).exchange;
  ctx.running.push(a.exchange, b);
  await a.exchange.start();
  await b.start();
  await a.exchange.publishExport(exportOf("shop", "web"));
  const stale: string[] = [];
  const controller = new AbortController();
  const watching = (async () => {
    for await (const change of b.watchClusters({ signal: controller.signal })) if (change.cluster?.stale) stale.push(change.name);
  })();
  // Long enough for failed renewals to grow the retry delay (0.2, 0.4, 0.8, 1.6 s) past the reconnect grace (half the TTL).
  store.stop();
  await sleep(3_500);
  // The first lease write after the return is refused, as by a server whose stream is not ready yet.
  a.bus.refuseWrites(".lease", 1);
  store.start();
  await sleep(LEASE_TTL_MS * 1.5);
  controller.abort();
  await watching;
  assert.is(store.refusals.length, 1, "A's first lease write after the outage was refused");
  assert.equal(stale, [], "B never saw A stale");
  assert.ok(b.service("shop", "web"), "B still routes to A's export");
});

test("a lease renewal held through an outage that fails after the resync pauses judging only until the next renewal lands", async (ctx) => {
  const LEASE_TTL_MS = 2_000;
  const HOLD_MS = 1_500;
  const store = new MemoryStore();
  const a = newExchange(ctx.pki, store, "cluster-a", LEASE_TTL_MS).exchange;
  const b = newExchange(ctx.pki, store, "cluster-b", LEASE_TTL_MS).exchange;
  ctx.running.push(a, b);
  await a.start();
  await b.start();
  await a.publishExport(exportOf("shop", "web"));
  store.stop({ holdWritesMs: HOLD_MS });
  await sleep(1_000);
  store.start();
  // Both resync at once; the renewals sent during the outage fail HOLD_MS later, after those resyncs.
  await sleep(HOLD_MS + 1_000);
  assert.ok(b.service("shop", "web"), "A is not stale to B while it renews");
  await a.close();
  // Once A is silent for its TTL (plus the grace) B must withdraw it; frozen judging never would.
  const deadline = Date.now() + LEASE_TTL_MS * 10;
  while (b.service("shop", "web") && Date.now() < deadline) await sleep(50);
  assert.is(b.service("shop", "web"), undefined, "B withdrew the silent A's export");
  assert.ok(b.clusters().find((c) => c.name === "cluster-a")?.stale, "B sees A stale");
});

test.run();
