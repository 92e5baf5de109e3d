import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError, WorkQueue } from "../../common/index.ts";

const queue = suite("WorkQueue");
const tick = () => new Promise((r) => setTimeout(r, 5));

queue("runs a key added many times while queued once", async () => {
  const runs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const q = new WorkQueue({
    workers: 1,
    reconcile: async (k) => {
      runs.push(k);
      if (k === "busy") await gate;
    },
  });
  q.add("busy"); // occupies the only worker, so the rest wait in the queue
  q.add("a");
  q.add("b");
  q.add("a");
  q.add("a");
  release();
  await q.idle();
  assert.equal(runs, ["busy", "a", "b"]);
});

queue("never runs one key concurrently, and reruns a key added while it ran", async () => {
  let concurrent = 0;
  let maxConcurrent = 0;
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const q = new WorkQueue({
    workers: 4,
    reconcile: async () => {
      runs++;
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      if (runs === 1) await gate;
      concurrent--;
    },
  });
  q.add("k");
  await tick();
  q.add("k");
  q.add("k");
  await tick();
  assert.is(runs, 1, "the second add waits for the first run");
  release();
  await q.idle();
  assert.is(runs, 2, "one rerun for all adds that came during the run");
  assert.is(maxConcurrent, 1);
});

queue("retries a retryable failure with backoff until it succeeds", async () => {
  let attempts = 0;
  const errors: boolean[] = [];
  const q = new WorkQueue({
    retryInitialMs: 1,
    retryMaxMs: 4,
    reconcile: async () => {
      if (++attempts < 4) throw new FedgateError("FEDGATE_TEST_FLAKY", "flaky", { retryable: true });
    },
    onError: (_k, _e, terminal) => errors.push(terminal),
  });
  q.add("k");
  await q.idle();
  assert.is(attempts, 4);
  assert.equal(errors, [false, false, false]);
});

queue("does not retry a terminal failure", async () => {
  let attempts = 0;
  const errors: boolean[] = [];
  const q = new WorkQueue({
    retryInitialMs: 1,
    reconcile: async () => {
      attempts++;
      throw new FedgateError("FEDGATE_TEST_BAD_SPEC", "bad spec");
    },
    onError: (_k, _e, terminal) => errors.push(terminal),
  });
  q.add("k");
  await q.idle();
  await tick();
  assert.is(attempts, 1);
  assert.equal(errors, [true]);
});

queue("requeues after the delay a reconcile asks for", async () => {
  let runs = 0;
  const q = new WorkQueue({ reconcile: async () => (++runs < 3 ? { requeueAfterMs: 2 } : undefined) });
  q.add("k");
  await q.idle();
  assert.is(runs, 3);
});

queue("shutDown waits for work in flight and accepts no more", async () => {
  let finished = false;
  const q = new WorkQueue({
    reconcile: async () => {
      await tick();
      finished = true;
    },
  });
  q.add("k");
  await tick();
  await q.shutDown();
  assert.ok(finished);
  q.add("again");
  assert.is(q.length, 0);
});

queue("a paused queue collects keys and runs them only after resume", async () => {
  const runs: string[] = [];
  const q = new WorkQueue({ reconcile: async (k) => void runs.push(k), paused: true });
  q.add("a");
  q.add("b");
  await tick();
  assert.equal(runs, []);
  q.resume();
  await q.idle();
  assert.equal(runs, ["a", "b"]);
});

queue("pause lets running keys finish but starts no new ones until resume", async () => {
  const runs: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const q = new WorkQueue({
    workers: 1,
    reconcile: async (k) => {
      runs.push(k);
      if (k === "running") await gate;
    },
  });
  q.add("running");
  q.pause();
  q.add("waiting");
  release();
  await tick();
  assert.equal(runs, ["running"]);
  assert.is(q.length, 1);
  q.resume();
  await q.idle();
  assert.equal(runs, ["running", "waiting"]);
});

queue.run();
