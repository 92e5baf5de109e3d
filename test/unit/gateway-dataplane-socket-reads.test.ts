import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { SHARED_READ_BUFFER_BYTES, SharedReadBuffer } from "../../gateway/internal.ts";

/** A loopback server whose accepted sockets the test drives. */
async function server(): Promise<{ server: Server; port: number; accepted: () => Promise<Socket> }> {
  const waiting: ((s: Socket) => void)[] = [];
  const ready: Socket[] = [];
  const srv = createServer((s) => {
    const w = waiting.shift();
    if (w) w(s);
    else ready.push(s);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    server: srv,
    port: (srv.address() as AddressInfo).port,
    accepted: () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r))),
  };
}

async function waitFor(ok: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) assert.unreachable(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const reads = suite("shared read buffer (net onread)");

reads("sockets reading into one buffer each get their own bytes, intact, when the sink copies at once", async () => {
  const { server: srv, port, accepted } = await server();
  const shared = new SharedReadBuffer();
  const got = [Buffer.alloc(0), Buffer.alloc(0)];
  const clients = [0, 1].map((i) => {
    const reader = shared.reader();
    const socket = connect({ host: "127.0.0.1", port, onread: reader.onread });
    reader.attach((chunk) => {
      got[i] = Buffer.concat([got[i]!, chunk]);
      return true;
    });
    return socket;
  });
  const peers = [await accepted(), await accepted()];
  // More than the buffer holds, interleaved, with a different byte per socket: any overwrite would show.
  const size = SHARED_READ_BUFFER_BYTES * 3 + 17;
  peers[0]!.end(Buffer.alloc(size, 0x61));
  peers[1]!.end(Buffer.alloc(size, 0x62));
  await waitFor(() => got[0]!.length === size && got[1]!.length === size, "both sockets' bytes");
  assert.ok(got[0]!.every((b) => b === 0x61));
  assert.ok(got[1]!.every((b) => b === 0x62));
  for (const c of clients) c.destroy();
  srv.close();
});

reads("reads before attach are kept and delivered first, in order", async () => {
  const { server: srv, port, accepted } = await server();
  const reader = new SharedReadBuffer().reader();
  const socket = connect({ host: "127.0.0.1", port, onread: reader.onread });
  const peer = await accepted();
  peer.write("backend-b\n");
  // Let the early bytes arrive (the buffer is reused by later reads, so they must have been copied).
  await new Promise((r) => setTimeout(r, 100));
  const chunks: string[] = [];
  assert.ok(reader.attach((chunk) => (chunks.push(chunk.toString()), true)));
  peer.write("after");
  await waitFor(() => chunks.join("") === "backend-b\nafter", "early then later bytes");
  socket.destroy();
  srv.close();
});

reads("a sink that returns false pauses the socket until resume", async () => {
  const { server: srv, port, accepted } = await server();
  const reader = new SharedReadBuffer().reader();
  const socket = connect({ host: "127.0.0.1", port, onread: reader.onread });
  let calls = 0;
  let bytes = 0;
  reader.attach((chunk) => {
    calls += 1;
    bytes += chunk.length;
    return calls > 1;
  });
  const peer = await accepted();
  peer.write("first");
  await waitFor(() => calls === 1, "the first read");
  peer.end("second");
  await new Promise((r) => setTimeout(r, 100));
  assert.is(calls, 1, "no read while paused");
  let ended = false;
  socket.once("end", () => (ended = true));
  socket.resume();
  await waitFor(() => bytes === "firstsecond".length && ended, "the rest and the end after resume");
  socket.destroy();
  srv.close();
});

reads("the peer's FIN still ends the socket (nothing but the reader consumes it)", async () => {
  const { server: srv, port, accepted } = await server();
  const reader = new SharedReadBuffer().reader();
  const socket = connect({ host: "127.0.0.1", port, onread: reader.onread });
  let text = "";
  reader.attach((chunk) => ((text += chunk.toString()), true));
  let ended = false;
  socket.once("end", () => (ended = true));
  (await accepted()).end("last words");
  await waitFor(() => ended, "'end' after the peer's FIN");
  assert.is(text, "last words");
  socket.destroy();
  srv.close();
});

reads("attach reports a refused early read, so the caller pauses the socket", () => {
  const reader = new SharedReadBuffer().reader();
  const buf = reader.onread.buffer;
  buf.write("abc");
  reader.onread.callback(3, buf);
  buf.write("xyz");
  const seen: string[] = [];
  assert.is(
    reader.attach((chunk) => (seen.push(chunk.toString()), false)),
    false,
  );
  assert.equal(seen, ["abc"], "the early read was copied before the buffer was reused");
});

reads.run();
