import { suite } from "uvu";
import * as assert from "uvu/assert";
import { Backoff, sleep } from "../../common/index.ts";

const backoff = suite("Backoff");

backoff("doubles from the initial delay and stops at the cap", () => {
  const b = new Backoff({ initialMs: 100, maxMs: 1_000, jitter: 0 });
  assert.equal([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1_000]);
  assert.is(b.failures, 5);
});

backoff("spreads each delay by the jitter fraction", () => {
  const low = new Backoff({ initialMs: 1_000, maxMs: 10_000, jitter: 0.2, random: () => 0 });
  const high = new Backoff({ initialMs: 1_000, maxMs: 10_000, jitter: 0.2, random: () => 1 });
  assert.is(low.next(), 800);
  assert.is(high.next(), 1_200);
});

backoff("starts over after reset", () => {
  const b = new Backoff({ initialMs: 50, maxMs: 1_000, jitter: 0 });
  b.next();
  b.next();
  b.reset();
  assert.is(b.next(), 50);
});

backoff("sleep rejects with the abort reason when aborted", async () => {
  const controller = new AbortController();
  const pending = sleep(60_000, controller.signal);
  controller.abort(new Error("shutting down"));
  try {
    await pending;
    assert.unreachable("sleep resolved after abort");
  } catch (err) {
    assert.instance(err, Error);
    assert.is((err as Error).message, "shutting down");
  }
});

backoff.run();
