import { PassThrough, Writable } from "node:stream";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ReplayBody } from "../../gateway/internal.ts";

/** A sink that records what it got and whether it was ended. */
function sink(): { stream: Writable; text: () => string; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      chunks.push(chunk);
      cb();
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString(), ended: () => ended };
}

const tick = () => new Promise((r) => setImmediate(r));

const replay = suite("ReplayBody: a request body that can be sent again");

replay("a body under the cap is sent whole to each attempt, including chunks that came before it attached", async () => {
  const source = new PassThrough();
  const body = new ReplayBody({ source, capBytes: 100 });
  source.write("ab");
  await tick();
  const first = sink();
  assert.ok(body.attach(first.stream));
  source.write("cd");
  await tick();
  body.detach();
  source.end("ef");
  await tick();
  assert.is(first.text(), "abcd", "a detached attempt gets nothing more");
  assert.ok(body.complete && body.replayable);
  const second = sink();
  assert.ok(body.attach(second.stream));
  await tick();
  assert.is(second.text(), "abcdef");
  assert.ok(second.ended());
});

replay("past the cap the body streams on but can no longer be replayed", async () => {
  const source = new PassThrough();
  const body = new ReplayBody({ source, capBytes: 4 });
  const first = sink();
  body.attach(first.stream);
  source.end("0123456789");
  await tick();
  assert.is(first.text(), "0123456789");
  assert.not.ok(body.replayable);
  assert.not.ok(body.complete);
  assert.not.ok(body.attach(sink().stream), "a second attempt is refused");
});

replay("with no attempt attached, the source is paused at the cap and nothing is lost", async () => {
  const source = new PassThrough();
  const body = new ReplayBody({ source, capBytes: 4 });
  source.write("012345");
  await tick();
  assert.ok(source.isPaused(), "paused while no attempt takes the bytes");
  const first = sink();
  body.attach(first.stream);
  source.end("67");
  await tick();
  assert.is(first.text(), "01234567");
  assert.not.ok(body.replayable, "the held bytes were over the cap");
});

replay("a request known to have no body is complete at once, ends each attempt's body and never reads its source", async () => {
  const source = new PassThrough();
  const body = new ReplayBody({ source, capBytes: 4, empty: true });
  assert.ok(body.complete && body.replayable);
  const first = sink();
  assert.ok(body.attach(first.stream));
  await tick();
  assert.ok(first.ended(), "the attempt's body is ended");
  assert.is(source.listenerCount("data"), 0, "the source is left alone");
  const second = sink();
  assert.ok(body.attach(second.stream));
  await tick();
  assert.ok(second.ended() && second.text() === "");
});

replay.run();
