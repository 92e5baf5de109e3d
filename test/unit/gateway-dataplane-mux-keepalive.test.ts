import { duplexPair, type Duplex } from "node:stream";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { sleep } from "../../common/index.ts";
import { encodeFrame, FrameDecoder, FrameType, MuxProtocolError, MuxSession, type Frame, type MuxStreamRefusedError } from "../../gateway/internal.ts";

const KEEPALIVE = { intervalMs: 20, timeoutMs: 40 };

/** Everything one end of a pair receives, decoded as frames. */
function framesAt(socket: Duplex): Frame[] {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder();
  socket.on("data", (c: Buffer) => frames.push(...decoder.push(c)));
  return frames;
}

async function until(what: string, predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !predicate(); i++) await sleep(10);
  assert.ok(predicate(), what);
}

const framing = suite("fedgate-mux/2 PING and PONG frames");

const cases: { name: string; input: Buffer; reason?: string }[] = [
  { name: "PING with 8 bytes on stream 0", input: encodeFrame(FrameType.PING, 0, Buffer.alloc(8, 7)) },
  { name: "PONG with 8 bytes on stream 0", input: encodeFrame(FrameType.PONG, 0, Buffer.alloc(8, 7)) },
  { name: "PING on a stream", input: encodeFrame(FrameType.PING, 3, Buffer.alloc(8)), reason: "bad_stream_id" },
  { name: "PONG on a stream", input: encodeFrame(FrameType.PONG, 1, Buffer.alloc(8)), reason: "bad_stream_id" },
  { name: "PING with 7 bytes", input: encodeFrame(FrameType.PING, 0, Buffer.alloc(7)), reason: "bad_frame_length" },
  { name: "PONG without payload", input: encodeFrame(FrameType.PONG, 0), reason: "bad_frame_length" },
];

for (const c of cases) {
  framing(`${c.reason ? "rejects" : "decodes"}: ${c.name}`, () => {
    if (!c.reason) {
      const [frame, ...rest] = new FrameDecoder().push(c.input);
      assert.equal(rest, []);
      assert.is(frame!.type, c.input[0]);
      assert.ok(frame!.payload.equals(Buffer.alloc(8, 7)));
      return;
    }
    try {
      new FrameDecoder().push(c.input);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, MuxProtocolError);
      assert.is((err as MuxProtocolError).reason, c.reason);
    }
  });
}

const session = suite("fedgate-mux/2 keep-alive on a session");

session("a fedgate-mux/2 server answers PING with a PONG carrying the same bytes", async () => {
  const [peer, end] = duplexPair();
  const server = new MuxSession({ socket: end, role: "server", maxStreams: 8, pings: true });
  const got = framesAt(peer);
  peer.write(encodeFrame(FrameType.PING, 0, Buffer.from("abcdefgh")));
  await until("a PONG", () => got.length === 1);
  assert.is(got[0]!.type, FrameType.PONG);
  assert.is(got[0]!.payload.toString(), "abcdefgh");
  assert.not.ok(server.closed);
  server.destroy();
});

session("on fedgate-mux/1 a PING is junk: the tunnel is closed with unexpected_frame and nothing is answered", async () => {
  const [peer, end] = duplexPair();
  const errors: string[] = [];
  const server = new MuxSession({ socket: end, role: "server", maxStreams: 8, onProtocolError: (e) => errors.push(e.reason) });
  const got = framesAt(peer);
  peer.write(encodeFrame(FrameType.PING, 0, Buffer.alloc(8)));
  await until("closed", () => server.closed);
  assert.equal(errors, ["unexpected_frame"]);
  assert.equal(got, []);
});

session("a client on a live fedgate-mux/2 peer keeps its tunnel across many intervals, pinging only while it hears nothing", async () => {
  const [near, far] = duplexPair();
  let timeouts = 0;
  const client = new MuxSession({ socket: near, role: "client", maxStreams: 8, pings: true, keepAlive: KEEPALIVE, onKeepAliveTimeout: () => (timeouts += 1) });
  const pings: Frame[] = [];
  const decoder = new FrameDecoder();
  far.on("data", (c: Buffer) => {
    for (const f of decoder.push(c)) {
      pings.push(f);
      far.write(encodeFrame(FrameType.PONG, 0, f.payload));
    }
  });
  await sleep(KEEPALIVE.intervalMs * 15);
  assert.ok(pings.length >= 2, `PINGs were sent (${pings.length})`);
  assert.ok(pings.every((f) => f.type === FrameType.PING));
  assert.is(timeouts, 0);
  assert.not.ok(client.closed);
  client.destroy();
});

session("a silent peer: the client declares the tunnel dead, says so, and its pending open fails with tunnel_closed", async () => {
  const [near, far] = duplexPair();
  let timeouts = 0;
  const client = new MuxSession({ socket: near, role: "client", maxStreams: 8, pings: true, keepAlive: KEEPALIVE, onKeepAliveTimeout: () => (timeouts += 1) });
  const seen = framesAt(far);
  const pending = client.open("svc").then(
    () => "opened",
    (err: unknown) => (err as MuxStreamRefusedError).reason,
  );
  // The keep-alive timers are unref'd (they never hold a process open): wait on a timer that does.
  await until("the tunnel declared dead", () => client.closed);
  assert.is(await pending, "tunnel_closed");
  assert.is(timeouts, 1);
  assert.ok(client.closed);
  assert.ok(seen.some((f) => f.type === FrameType.PING), "a PING went out before giving up");
});

session("without fedgate-mux/2 (pings false) a client never sends a PING and never times out, whatever its keep-alive", async () => {
  const [near, far] = duplexPair();
  let timeouts = 0;
  const client = new MuxSession({ socket: near, role: "client", maxStreams: 8, pings: false, keepAlive: KEEPALIVE, onKeepAliveTimeout: () => (timeouts += 1) });
  const seen = framesAt(far);
  await sleep(KEEPALIVE.intervalMs * 10);
  assert.equal(seen, []);
  assert.is(timeouts, 0);
  assert.not.ok(client.closed);
  client.destroy();
});

session("a server with a keep-alive PINGs a silent client, which answers: the tunnel and its stream stay across many intervals", async () => {
  const [near, far] = duplexPair();
  let timeouts = 0;
  const opened: string[] = [];
  const server = new MuxSession({ socket: near, role: "server", maxStreams: 8, pings: true, keepAlive: KEEPALIVE, onKeepAliveTimeout: () => (timeouts += 1), onStream: (s) => (opened.push(s.service), s.accept()) });
  // The client has no keep-alive of its own, so every PING here is the server's.
  const client = new MuxSession({ socket: far, role: "client", maxStreams: 8, pings: true });
  const fromClient = framesAt(near);
  await client.open("svc");
  await sleep(KEEPALIVE.intervalMs * 15);
  const pongs = fromClient.filter((f) => f.type === FrameType.PONG).length;
  assert.ok(pongs >= 2, `the client answered the server's PINGs (${pongs} PONGs)`);
  assert.is(timeouts, 0);
  assert.not.ok(server.closed);
  assert.is(server.activeStreams, 1);
  assert.equal(opened, ["svc"]);
  client.destroy();
});

session("a server with a keep-alive closes a client that stopped answering, and its open stream is reset with tunnel_closed", async () => {
  const [near, far] = duplexPair();
  let timeouts = 0;
  const resets: string[] = [];
  const server = new MuxSession({
    socket: near,
    role: "server",
    maxStreams: 8,
    pings: true,
    keepAlive: KEEPALIVE,
    onKeepAliveTimeout: () => (timeouts += 1),
    onStream: (s) => {
      s.attach({ onData: () => {}, onEnd: () => {}, onReset: (reason) => resets.push(reason), onDrain: () => {} });
      s.accept();
    },
  });
  // A frozen dialler: it opened a stream, then reads nothing and answers nothing.
  const seen = framesAt(far);
  far.write(encodeFrame(FrameType.OPEN, 1, Buffer.from("svc")));
  await until("the tunnel declared dead", () => server.closed);
  assert.is(timeouts, 1);
  assert.equal(resets, ["tunnel_closed"]);
  assert.ok(seen.some((f) => f.type === FrameType.PING), "the server sent a PING before giving up");
});

framing.run();
session.run();
