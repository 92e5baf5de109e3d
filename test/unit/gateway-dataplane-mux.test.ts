import { Duplex } from "node:stream";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  encodeFrame,
  encodeOpen,
  encodeReset,
  encodeWindow,
  FrameDecoder,
  FrameType,
  MUX_INITIAL_WINDOW_BYTES,
  MUX_MAX_FRAME_PAYLOAD_BYTES,
  MuxProtocolError,
  MuxSession,
  MuxStreamDuplex,
  MuxStreamRefusedError,
  MuxStreamResetError,
  resetReason,
  type Frame,
  type MuxResetReason,
  type MuxStream,
} from "../../gateway/internal.ts";

const tick = () => new Promise((r) => setImmediate(r));
/** Lets turns pass until `ok()` (bounded, so a bug fails the test instead of hanging it). */
async function waitFor(ok: () => boolean, turns = 500): Promise<void> {
  for (let i = 0; i < turns && !ok(); i++) await tick();
  assert.ok(ok(), "condition never held");
}
async function settle(turns = 6): Promise<void> {
  for (let i = 0; i < turns; i++) await tick();
}

/**
 * Two in-memory duplexes wired to each other: what one writes, the other reads. Records every write.
 * With `heldWrites`, A's writes reach B at once but complete only when the test runs the held callbacks (a congested socket).
 */
function duplexPair(heldWrites?: (() => void)[]): { a: Duplex; b: Duplex; writesFromA: Buffer[] } {
  const writesFromA: Buffer[] = [];
  const holder: { a?: Duplex; b?: Duplex } = {};
  const make = (peer: () => Duplex | undefined, record?: Buffer[]) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _e, cb) {
        record?.push(chunk);
        peer()?.push(chunk);
        if (record && heldWrites) heldWrites.push(() => cb());
        else cb();
      },
      final(cb) {
        peer()?.push(null);
        cb();
      },
      destroy(err, cb) {
        peer()?.push(null);
        cb(err);
      },
    });
  holder.a = make(() => holder.b, writesFromA);
  holder.b = make(() => holder.a);
  holder.a.on("end", () => holder.a?.destroy());
  holder.b.on("end", () => holder.b?.destroy());
  return { a: holder.a, b: holder.b, writesFromA };
}

const framing = suite("fedgate-mux framing");

framing("frames round-trip through the decoder, split at every byte boundary", () => {
  const wire = Buffer.concat([
    encodeOpen(1, "outbound_.9000_._.echo.demo.svc.clusterset.local"),
    encodeFrame(FrameType.OPEN_ACK, 1),
    encodeFrame(FrameType.DATA, 1, Buffer.from("hello")),
    encodeWindow(1, 4096),
    encodeFrame(FrameType.END, 1),
    encodeReset(3, "no_healthy_upstream"),
    encodeFrame(FrameType.GOAWAY, 0),
  ]);
  for (let cut = 0; cut <= wire.length; cut++) {
    const d = new FrameDecoder();
    const frames = joinDataPieces([...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))]);
    assert.equal(
      frames.map((f) => [f.type, f.stream, f.payload.toString("latin1")]),
      [
        [FrameType.OPEN, 1, "outbound_.9000_._.echo.demo.svc.clusterset.local"],
        [FrameType.OPEN_ACK, 1, ""],
        [FrameType.DATA, 1, "hello"],
        [FrameType.WINDOW, 1, "\x00\x00\x10\x00"],
        [FrameType.END, 1, ""],
        [FrameType.RESET, 3, "\x03"],
        [FrameType.GOAWAY, 0, ""],
      ],
      `cut at ${cut}`,
    );
  }
  assert.is(resetReason(Buffer.of(3)), "no_healthy_upstream");
});

framing("a large DATA frame fed in small reads is handed on piece by piece, as it arrives", () => {
  const payload = Buffer.alloc(MUX_MAX_FRAME_PAYLOAD_BYTES);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
  const wire = Buffer.concat([encodeFrame(FrameType.DATA, 5, payload), encodeFrame(FrameType.END, 5)]);
  const d = new FrameDecoder();
  const out = [];
  for (let i = 0; i < wire.length; i += 1000) {
    const pieces = d.push(wire.subarray(i, i + 1000));
    // Every read that carries payload bytes yields them at once: nothing waits for the frame's end.
    if (i + 1000 > 9 && i < 9 + payload.length) assert.ok(pieces.some((f) => f.type === FrameType.DATA), `read at ${i}`);
    out.push(...pieces);
  }
  assert.ok(out.slice(0, -1).every((f) => f.type === FrameType.DATA && f.stream === 5));
  assert.ok(Buffer.concat(out.slice(0, -1).map((f) => f.payload)).equals(payload));
  assert.is(out.at(-1)!.type, FrameType.END);
});

/** Adjacent DATA pieces of one stream, joined back into the frames that were sent. */
function joinDataPieces(frames: Frame[]): Frame[] {
  const out: Frame[] = [];
  for (const f of frames) {
    const last = out.at(-1);
    if (last && f.type === FrameType.DATA && last.type === FrameType.DATA && last.stream === f.stream) last.payload = Buffer.concat([last.payload, f.payload]);
    else out.push({ ...f });
  }
  return out;
}

const header = (type: number, stream: number, length: number) => {
  const b = Buffer.alloc(9);
  b[0] = type;
  b.writeUInt32BE(stream, 1);
  b.writeUInt32BE(length, 5);
  return b;
};

const badInput: { name: string; input: Buffer; reason: string }[] = [
  { name: "unknown frame type", input: header(42, 1, 0), reason: "unknown_frame_type" },
  { name: "HTTP text instead of frames", input: Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), reason: "unknown_frame_type" },
  { name: "oversized frame (refused from its header, before the payload)", input: header(FrameType.DATA, 1, MUX_MAX_FRAME_PAYLOAD_BYTES + 1), reason: "frame_too_large" },
  { name: "empty DATA", input: header(FrameType.DATA, 1, 0), reason: "bad_frame_length" },
  { name: "END with a payload", input: Buffer.concat([header(FrameType.END, 1, 1), Buffer.of(0)]), reason: "bad_frame_length" },
  { name: "DATA on stream 0", input: Buffer.concat([header(FrameType.DATA, 0, 1), Buffer.of(0)]), reason: "bad_stream_id" },
  { name: "GOAWAY on a stream", input: header(FrameType.GOAWAY, 3, 0), reason: "bad_stream_id" },
  { name: "reset code out of range", input: Buffer.concat([header(FrameType.RESET, 1, 1), Buffer.of(200)]), reason: "bad_reset_code" },
  { name: "zero window increment", input: encodeWindow(1, 0), reason: "bad_window" },
  { name: "OPEN with a non-hostname service", input: Buffer.concat([header(FrameType.OPEN, 1, 3), Buffer.from("a b")]), reason: "bad_service_name" },
];

for (const c of badInput) {
  framing(`bad input is a typed error: ${c.name}`, () => {
    try {
      new FrameDecoder().push(c.input);
      assert.unreachable("should have thrown");
    } catch (err) {
      assert.instance(err, MuxProtocolError);
      assert.is((err as MuxProtocolError).reason, c.reason);
      assert.is((err as MuxProtocolError).code, "FEDGATE_GATEWAY_MUX_PROTOCOL");
    }
  });
}

interface Pair {
  client: MuxSession;
  server: MuxSession;
  accepted: MuxStream[];
  errors: { side: string; reason: string }[];
  writesFromClient: Buffer[];
}

/** A client and a server session over an in-memory pair; the server accepts every stream unless told otherwise. */
function sessions(options: { maxStreams?: number; refuse?: MuxResetReason; heldClientWrites?: (() => void)[] } = {}): Pair {
  const { a, b, writesFromA } = duplexPair(options.heldClientWrites);
  const accepted: MuxStream[] = [];
  const errors: { side: string; reason: string }[] = [];
  const client = new MuxSession({ socket: a, role: "client", maxStreams: 1024, onProtocolError: (e) => errors.push({ side: "client", reason: e.reason }) });
  const server = new MuxSession({
    socket: b,
    role: "server",
    maxStreams: options.maxStreams ?? 1024,
    onProtocolError: (e) => errors.push({ side: "server", reason: e.reason }),
    onStream: (s) => {
      if (options.refuse) return s.reset(options.refuse);
      accepted.push(s);
      s.accept();
    },
  });
  return { client, server, accepted, errors, writesFromClient: writesFromA };
}

/** Collects what a stream delivers. */
function collect(stream: MuxStream, options: { credit?: boolean } = {}) {
  const got = { data: [] as Buffer[], ended: false, reset: undefined as MuxResetReason | undefined, drains: 0 };
  stream.attach({
    onData: (c) => {
      got.data.push(c);
      if (options.credit !== false) stream.consumed(c.length);
    },
    onEnd: () => (got.ended = true),
    onReset: (r) => (got.reset = r),
    onDrain: () => (got.drains += 1),
  });
  return { got, text: () => Buffer.concat(got.data).toString(), bytes: () => got.data.reduce((n, c) => n + c.length, 0) };
}

const session = suite("fedgate-mux sessions and flow control");

session("streams open on OPEN_ACK, carry data both ways and half-close independently", async () => {
  const p = sessions();
  const s = await p.client.open("svc.example");
  assert.is(p.accepted.length, 1);
  assert.is(p.accepted[0]!.service, "svc.example");
  const atClient = collect(s);
  const atServer = collect(p.accepted[0]!);
  s.write(Buffer.from("ping"));
  s.end();
  await settle();
  assert.is(atServer.text(), "ping");
  assert.ok(atServer.got.ended, "server saw the client's END");
  assert.is(p.server.activeStreams, 1, "still open: the server's direction is not ended");
  p.accepted[0]!.write(Buffer.from("pong"));
  p.accepted[0]!.end();
  await settle();
  assert.is(atClient.text(), "pong");
  assert.ok(atClient.got.ended);
  assert.is(p.client.activeStreams, 0);
  assert.is(p.server.activeStreams, 0);
  assert.equal(p.errors, []);
});

session("frames of many streams produced in one turn leave in one write", async () => {
  const p = sessions();
  const streams = await Promise.all(Array.from({ length: 20 }, () => p.client.open("svc")));
  await settle();
  const before = p.writesFromClient.length;
  for (const s of streams) s.write(Buffer.from("x"));
  await settle();
  assert.is(p.writesFromClient.length - before, 1, "one socket write for 20 DATA frames");
});

session("frames produced while the socket is congested wait for 'drain' and leave as one write, in order", async () => {
  const held: (() => void)[] = [];
  const release = () => held.splice(0).forEach((cb) => cb());
  const p = sessions({ heldClientWrites: held });
  const opening = Promise.all([p.client.open("svc"), p.client.open("svc")]);
  await settle();
  release();
  const [s1, s2] = await opening;
  const at1 = collect(p.accepted[0]!);
  const at2 = collect(p.accepted[1]!);
  await settle();
  release();
  await settle();
  const before = p.writesFromClient.length;
  // A full frame's worth goes out at once and, unfinished, leaves the socket asking for 'drain'.
  s1.write(Buffer.alloc(MUX_MAX_FRAME_PAYLOAD_BYTES, 7));
  s1.write(Buffer.from("a"));
  await settle();
  s2.write(Buffer.from("c"));
  await settle();
  s1.write(Buffer.from("b"));
  await settle();
  assert.is(p.writesFromClient.length - before, 1, "only the first write while the socket is congested");
  release();
  await settle();
  assert.is(p.writesFromClient.length - before, 2, "the frames of three turns left in one write on 'drain'");
  release();
  await settle();
  assert.is(at1.bytes(), MUX_MAX_FRAME_PAYLOAD_BYTES + 2);
  assert.is(at1.text().slice(-2), "ab", "in order after the big frame");
  assert.is(at2.text(), "c");
  assert.equal(p.errors, []);
});

session("a tunnel that goes idle after GOAWAY while congested sends its last frames before it ends", async () => {
  const held: (() => void)[] = [];
  const release = () => held.splice(0).forEach((cb) => cb());
  const p = sessions({ heldClientWrites: held });
  const opening = p.client.open("svc");
  await settle();
  release();
  const s = await opening;
  const atServer = collect(p.accepted[0]!);
  p.accepted[0]!.end();
  await settle();
  release();
  await settle();
  p.client.goAway();
  s.write(Buffer.alloc(MUX_MAX_FRAME_PAYLOAD_BYTES, 8));
  s.write(Buffer.from("tail"));
  s.end();
  await settle();
  for (let i = 0; i < 5; i++) {
    release();
    await settle();
  }
  assert.is(atServer.bytes(), MUX_MAX_FRAME_PAYLOAD_BYTES + 4, "the tail written while congested arrived");
  assert.ok(atServer.got.ended, "and the END after it, before the tunnel ended");
  assert.equal(p.errors, []);
});

session("a refused open rejects with the peer's reason, and the session keeps serving", async () => {
  const p = sessions({ refuse: "no_healthy_upstream" });
  try {
    await p.client.open("svc");
    assert.unreachable();
  } catch (err) {
    assert.instance(err, MuxStreamRefusedError);
    assert.is((err as MuxStreamRefusedError).reason, "no_healthy_upstream");
  }
  assert.is(p.client.activeStreams, 0);
  assert.ok(p.client.canOpen);
});

session("a slow reader stalls only its own stream: the sender holds data at the window and resumes on credit", async () => {
  const p = sessions();
  const slow = await p.client.open("svc");
  const fast = await p.client.open("svc");
  const slowAtServer = collect(p.accepted[0]!, { credit: false });
  const fastAtServer = collect(p.accepted[1]!);
  const slowAtClient = collect(slow);
  const big = Buffer.alloc(MUX_INITIAL_WINDOW_BYTES * 3, 1);
  assert.is(slow.write(big), false, "more than the window: held");
  assert.ok(fast.write(Buffer.from("quick")));
  await settle();
  assert.is(slowAtServer.bytes(), MUX_INITIAL_WINDOW_BYTES, "exactly one window arrived");
  assert.is(fastAtServer.text(), "quick", "the other stream was not blocked");
  // The reader takes what it got: credit flows back and the rest arrives.
  p.accepted[0]!.consumed(slowAtServer.bytes());
  await settle();
  assert.is(slowAtServer.bytes(), MUX_INITIAL_WINDOW_BYTES * 2);
  p.accepted[0]!.consumed(MUX_INITIAL_WINDOW_BYTES);
  await settle();
  p.accepted[0]!.consumed(MUX_INITIAL_WINDOW_BYTES);
  await settle();
  assert.is(slowAtServer.bytes(), big.length);
  assert.is(slowAtClient.got.drains, 1, "onDrain once the held data went out");
  assert.equal(p.errors, []);
});

session("a transient write is copied: reusing its memory at once changes nothing the peer gets, sent or held at the window", async () => {
  const p = sessions();
  const s = await p.client.open("svc");
  const atServer = collect(p.accepted[0]!, { credit: false });
  // One reused buffer, as a shared read buffer is: every write overwrites it right after.
  const shared = Buffer.alloc(MUX_INITIAL_WINDOW_BYTES);
  const sent: Buffer[] = [];
  for (let i = 0; i < 3; i++) {
    shared.fill(0x61 + i);
    sent.push(Buffer.from(shared));
    const flowing = s.write(shared, true);
    assert.is(flowing, i === 0, `write ${i}: only the first fits in the window`);
    shared.fill(0x7a);
  }
  await settle();
  assert.is(atServer.bytes(), MUX_INITIAL_WINDOW_BYTES, "one window arrived");
  for (let i = 0; i < 2; i++) {
    p.accepted[0]!.consumed(MUX_INITIAL_WINDOW_BYTES);
    await settle();
  }
  assert.ok(Buffer.concat(atServer.got.data).equals(Buffer.concat(sent)), "the bytes of each write as they were when written, in order");
  assert.equal(p.errors, []);
});

session("transient and kept writes of one turn share the turn's single write, in order", async () => {
  const p = sessions();
  const s = await p.client.open("svc");
  const atServer = collect(p.accepted[0]!);
  await settle();
  const before = p.writesFromClient.length;
  const shared = Buffer.from("AAAA");
  s.write(Buffer.from("1-"));
  s.write(shared, true);
  shared.write("ZZZZ");
  s.write(Buffer.from("-2"));
  await settle();
  assert.is(p.writesFromClient.length - before, 1);
  assert.is(atServer.text(), "1-AAAA-2");
});

session("END after held data goes out after that data", async () => {
  const p = sessions();
  const s = await p.client.open("svc");
  const atServer = collect(p.accepted[0]!);
  s.write(Buffer.alloc(MUX_INITIAL_WINDOW_BYTES + 10, 2));
  s.end();
  await settle(12);
  assert.is(atServer.bytes(), MUX_INITIAL_WINDOW_BYTES + 10);
  assert.ok(atServer.got.ended);
});

/** Raw frames from a misbehaving client straight into a server session. */
async function serverGets(frames: Buffer[], maxStreams = 1024): Promise<{ errors: string[]; closed: boolean }> {
  const { a, b } = duplexPair();
  const errors: string[] = [];
  let closed = false;
  new MuxSession({ socket: b, role: "server", maxStreams, onProtocolError: (e) => errors.push(e.reason), onStream: (s) => s.accept(), onClose: () => (closed = true) });
  for (const f of frames) a.write(f);
  await settle();
  return { errors, closed };
}

const violations: { name: string; frames: Buffer[]; maxStreams?: number; reason: string }[] = [
  { name: "too many streams", frames: [encodeOpen(1, "s"), encodeOpen(2, "s"), encodeOpen(3, "s")], maxStreams: 2, reason: "too_many_streams" },
  { name: "a stream id used twice", frames: [encodeOpen(5, "s"), encodeOpen(5, "s")], reason: "stream_id_reused" },
  { name: "data on a stream never opened", frames: [encodeFrame(FrameType.DATA, 9, Buffer.from("x"))], reason: "unknown_stream" },
  {
    name: "more data than the window",
    frames: [encodeOpen(1, "s"), ...Array.from({ length: MUX_INITIAL_WINDOW_BYTES / MUX_MAX_FRAME_PAYLOAD_BYTES + 1 }, () => encodeFrame(FrameType.DATA, 1, Buffer.alloc(MUX_MAX_FRAME_PAYLOAD_BYTES)))],
    reason: "window_exceeded",
  },
  { name: "a window past 2^31-1", frames: [encodeOpen(1, "s"), encodeWindow(1, 2 ** 31 - 1)], reason: "window_overflow" },
  { name: "data after END", frames: [encodeOpen(1, "s"), encodeFrame(FrameType.END, 1), encodeFrame(FrameType.DATA, 1, Buffer.from("x"))], reason: "data_after_end" },
  { name: "an OPEN_ACK sent to the exporting side", frames: [encodeOpen(1, "s"), encodeFrame(FrameType.OPEN_ACK, 1)], reason: "unexpected_frame" },
];

for (const v of violations) {
  session(`protocol violation closes the tunnel with a typed, counted reason: ${v.name}`, async () => {
    const r = await serverGets(v.frames, v.maxStreams);
    assert.equal(r.errors, [v.reason]);
    assert.ok(r.closed, "tunnel closed");
  });
}

session("frames for a stream we already closed are dropped, not an error (they crossed our RESET)", async () => {
  const r = await serverGets([encodeOpen(1, "s"), encodeReset(1, "cancel"), encodeFrame(FrameType.DATA, 1, Buffer.from("late")), encodeWindow(1, 10)]);
  assert.equal(r.errors, []);
  assert.not.ok(r.closed);
});

session("a lost tunnel fails its streams and pending opens at once", async () => {
  const { a, b } = duplexPair();
  const client = new MuxSession({ socket: a, role: "client", maxStreams: 8 });
  // A server that never answers: one open stays pending.
  const silent = new MuxSession({ socket: b, role: "server", maxStreams: 8, onStream: () => undefined });
  const pending = client.open("svc").then(
    () => "opened",
    (err: unknown) => (err as MuxStreamRefusedError).reason,
  );
  await settle();
  silent.destroy();
  a.destroy();
  assert.is(await pending, "tunnel_closed");
  assert.not.ok(client.canOpen);
});

session("GOAWAY: the server refuses new streams, open ones finish, then the tunnel closes", async () => {
  const p = sessions();
  const s = await p.client.open("svc");
  const atClient = collect(s);
  collect(p.accepted[0]!);
  p.server.goAway();
  await settle();
  assert.not.ok(p.client.canOpen, "the client stops opening streams");
  s.write(Buffer.from("still"));
  s.end();
  p.accepted[0]!.end();
  await settle(12);
  assert.ok(atClient.got.ended);
  assert.ok(p.server.closed && p.client.closed, "the tunnel closed after its last stream");
});

const asSocket = suite("a fedgate-mux stream as a socket (pooled L7 connections)");

/** What a MuxStreamDuplex emitted. */
function watch(d: MuxStreamDuplex) {
  const seen = { data: [] as Buffer[], ended: false, closed: false, error: undefined as Error | undefined, goaway: 0 };
  d.on("data", (c: Buffer) => seen.data.push(c));
  d.on("end", () => (seen.ended = true));
  d.on("close", () => (seen.closed = true));
  d.on("error", (err: Error) => (seen.error = err));
  d.on("goaway", () => (seen.goaway += 1));
  return { seen, text: () => Buffer.concat(seen.data).toString(), bytes: () => seen.data.reduce((n, c) => n + c.length, 0) };
}

asSocket("bytes both ways; the peer's END ends the socket and our side too, then the stream is closed", async () => {
  const p = sessions();
  const d = new MuxStreamDuplex(await p.client.open("svc"));
  const atClient = watch(d);
  const atServer = collect(p.accepted[0]!);
  d.write("GET / HTTP/1.1\r\n\r\n", "latin1");
  await settle();
  assert.is(atServer.text(), "GET / HTTP/1.1\r\n\r\n");
  p.accepted[0]!.write(Buffer.from("HTTP/1.1 200 OK\r\n\r\n"));
  p.accepted[0]!.end();
  await settle(12);
  assert.is(atClient.text(), "HTTP/1.1 200 OK\r\n\r\n");
  assert.ok(atClient.seen.ended && atClient.seen.closed);
  assert.ok(atServer.got.ended, "our END followed the peer's");
  assert.is(atClient.seen.error, undefined);
  assert.is(p.client.activeStreams, 0);
  assert.is(p.server.activeStreams, 0);
});

asSocket("a reset by the peer is an error on the socket; destroying the socket resets the stream", async () => {
  const p = sessions();
  const d1 = new MuxStreamDuplex(await p.client.open("svc"));
  const first = watch(d1);
  p.accepted[0]!.reset("upstream_reset");
  await settle();
  assert.instance(first.seen.error, MuxStreamResetError);
  assert.is((first.seen.error as MuxStreamResetError).reason, "upstream_reset");
  assert.ok(first.seen.closed);
  const d2 = new MuxStreamDuplex(await p.client.open("svc"));
  const atServer = collect(p.accepted[1]!);
  d2.destroy();
  await settle();
  assert.is(atServer.got.reset, "cancel");
  assert.is(p.client.activeStreams, 0);
  assert.equal(p.errors, []);
});

asSocket("a paused reader is not credited, so the peer stops at the window; resuming credits what it takes", async () => {
  const p = sessions();
  const d = new MuxStreamDuplex(await p.client.open("svc"));
  d.pause();
  const big = Buffer.alloc(MUX_INITIAL_WINDOW_BYTES * 3, 1);
  assert.is(p.accepted[0]!.write(big), false, "more than a window: held at the sender");
  await settle(12);
  assert.is(d.readableLength, MUX_INITIAL_WINDOW_BYTES, "exactly one window arrived while paused");
  let received = 0;
  d.on("data", (c: Buffer) => (received += c.length));
  d.resume();
  await waitFor(() => received === big.length);
  assert.equal(p.errors, []);
});

asSocket("a write beyond the peer's window completes once credit comes; the tunnel's GOAWAY is emitted and marks it retiring", async () => {
  const p = sessions();
  const d = new MuxStreamDuplex(await p.client.open("svc"));
  const seen = watch(d);
  const atServer = collect(p.accepted[0]!, { credit: false });
  let written = false;
  d.write(Buffer.alloc(MUX_INITIAL_WINDOW_BYTES + 10, 2), () => (written = true));
  await settle();
  assert.not.ok(written, "held at the window");
  p.accepted[0]!.consumed(atServer.bytes());
  await settle();
  assert.ok(written, "completed on credit");
  assert.not.ok(d.retiring);
  p.server.goAway();
  await settle();
  assert.is(seen.seen.goaway, 1);
  assert.ok(d.retiring, "no new exchange on a tunnel going away");
  assert.not.ok(seen.seen.closed, "the stream itself carries on");
});

asSocket("writeNow sends at once when nothing waits, and after the writes the window holds back otherwise (order kept)", async () => {
  const p = sessions();
  const d = new MuxStreamDuplex(await p.client.open("svc"));
  const atServer = collect(p.accepted[0]!, { credit: false });
  d.writeNow(Buffer.from("head-1|"));
  assert.is(d.writableLength, 0, "not queued in the Writable");
  await settle();
  assert.is(atServer.text(), "head-1|");
  const big = Buffer.alloc(MUX_INITIAL_WINDOW_BYTES, 0x62);
  d.write(big);
  d.writeNow(Buffer.from("|head-2"));
  await settle();
  assert.is(atServer.bytes(), MUX_INITIAL_WINDOW_BYTES, "stopped at the window");
  p.accepted[0]!.consumed(atServer.bytes());
  await waitFor(() => atServer.bytes() === "head-1|".length + big.length + "|head-2".length);
  assert.ok(atServer.text().endsWith(`${"b".repeat(100)}|head-2`), "the later write came after the held one");
  assert.equal(p.errors, []);
});

asSocket("a data sink takes bytes directly while the socket flows, and after what was buffered while paused (order kept)", async () => {
  const p = sessions();
  const d = new MuxStreamDuplex(await p.client.open("svc"));
  const got: string[] = [];
  const onData = (c: Buffer) => got.push(c.toString());
  let events = 0;
  d.on("data", onData);
  d.on("data", () => (events += 1));
  d.setDataSink(onData);
  const peer = p.accepted[0]!;
  peer.write(Buffer.from("a"));
  await settle();
  assert.equal(got, ["a"]);
  assert.is(events, 0, "no 'data' event for a direct delivery");
  d.pause();
  peer.write(Buffer.from("b"));
  await settle();
  assert.equal(got, ["a"], "held while paused");
  d.resume();
  peer.write(Buffer.from("c"));
  await waitFor(() => got.length === 3);
  assert.equal(got, ["a", "b", "c"]);
  assert.is(events, 1, "the buffered bytes came as an event, the later ones directly");
  assert.equal(p.errors, []);
});

framing.run();
session.run();
asSocket.run();
