import type { Socket } from "node:net";
import type { MuxStream } from "./mux-session.ts";
import type { SocketReader } from "./socket-reads.ts";
import type { UpstreamCluster } from "./upstream-cluster.ts";

/**
 * A chunk this large means a bulk transfer: Node's TLS sockets hand over
 * decrypted data in 16 KiB pieces, several per event-loop turn.
 */
const BULK_CHUNK_BYTES = 16 * 1024;

/**
 * Joins a downstream and an upstream socket: bytes both ways with
 * backpressure (pipe), FIN passed on, an error on either side resets the
 * other. Counts active connections and bytes on the upstream cluster.
 */
export function relay(down: Socket, up: Socket, cluster: UpstreamCluster): void {
  const series = cluster.series;
  series.connections.add();
  series.active.add(1);
  down.pipe(up);
  up.pipe(down);
  coalesceBulkWrites(down, up);
  coalesceBulkWrites(up, down);
  let closed = 0;
  const onClose = (hadError: boolean, other: Socket) => {
    if (hadError) other.destroy();
    else other.end();
    closed += 1;
    if (closed === 2) {
      series.active.add(-1);
      series.bytesUp.add(down.bytesRead);
      series.bytesDown.add(down.bytesWritten);
    }
  };
  // Errors are reported through 'close' (hadError); a listener is needed so they are not thrown.
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
  down.once("close", (hadError) => onClose(hadError, up));
  up.once("close", (hadError) => onClose(hadError, down));
}

/**
 * Joins a socket and a tunnel stream, as `relay` joins two sockets: bytes
 * both ways within the stream's window (the socket is paused while the peer
 * has no room, and received bytes are credited back once the socket took
 * them), END as FIN both ways, a socket error resets the stream and a reset
 * destroys the socket. `socketSide` says which end the socket is, so the
 * cluster's byte counters keep their direction. A socket made with a `reader`
 * (its reads in a shared buffer) is read through it, each read copied.
 */
export function relayStream(stream: MuxStream, socket: Socket, cluster: UpstreamCluster, socketSide: "downstream" | "upstream", reader?: SocketReader): void {
  const series = cluster.series;
  series.connections.add();
  series.active.add(1);
  let uncredited = 0;
  const coalesce = bulkCoalescer(socket);
  if (reader) {
    // Returning false pauses the socket; onDrain resumes it.
    if (!reader.attach((chunk) => stream.write(chunk, true))) socket.pause();
  } else {
    socket.on("data", (chunk: Buffer) => {
      if (!stream.write(chunk)) socket.pause();
    });
  }
  socket.on("end", () => stream.end());
  socket.on("drain", () => {
    stream.consumed(uncredited);
    uncredited = 0;
  });
  // Errors are reported through 'close' (hadError); a listener is needed so they are not thrown.
  socket.on("error", () => socket.destroy());
  socket.once("close", (hadError) => {
    if (hadError) stream.reset(socketSide === "upstream" ? "upstream_reset" : "cancel");
    else stream.end();
    series.active.add(-1);
    series.bytesUp.add(socketSide === "downstream" ? socket.bytesRead : socket.bytesWritten);
    series.bytesDown.add(socketSide === "downstream" ? socket.bytesWritten : socket.bytesRead);
  });
  stream.attach({
    onData: (chunk) => {
      // After the socket closed, data still in flight is dropped but credited, so the peer is never stuck.
      if (socket.destroyed) return stream.consumed(chunk.length);
      coalesce?.(chunk);
      if (socket.write(chunk)) stream.consumed(chunk.length);
      else uncredited += chunk.length;
    },
    onEnd: () => socket.end(),
    onReset: () => socket.destroy(),
    onDrain: () => socket.resume(),
  });
}

/**
 * Writes the bulk chunks `src` hands over in one event-loop turn to the plain
 * socket `dst` as one writev, not one syscall per 16 KiB (BENCHMARKS.md: 1.25x
 * the MB/s on 1 MiB bodies).
 */
function coalesceBulkWrites(src: Socket, dst: Socket): void {
  const coalesce = bulkCoalescer(dst);
  // Before pipe's own 'data' listener, so the chunk is written into the cork.
  if (coalesce) src.prependListener("data", coalesce);
}

/**
 * Returns a function to call before writing `chunk` to `dst`: a bulk chunk
 * corks `dst` until the end of the event-loop turn, so a turn's bulk chunks
 * (TLS reads, tunnel DATA pieces) leave in one writev. The uncork waits for
 * setImmediate because Node runs the tick queue after every native read
 * callback, between the pieces of one TLS read. Only plain destinations
 * (undefined for TLS): a TLS socket copies a writev's buffers into one before
 * encrypting. Small chunks (request/response traffic) are written at once.
 */
function bulkCoalescer(dst: Socket): ((chunk: Buffer) => void) | undefined {
  if ("encrypted" in dst) return undefined;
  let corked = false;
  const uncork = () => {
    corked = false;
    dst.uncork();
  };
  return (chunk) => {
    if (corked || chunk.length < BULK_CHUNK_BYTES) return;
    corked = true;
    dst.cork();
    setImmediate(uncork);
  };
}
