import type { Socket } from "node:net";
import type { MuxStream } from "./mux-session.ts";
import type { UpstreamCluster } from "./upstream-cluster.ts";

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
 * cluster's byte counters keep their direction.
 */
export function relayStream(stream: MuxStream, socket: Socket, cluster: UpstreamCluster, socketSide: "downstream" | "upstream"): void {
  const series = cluster.series;
  series.connections.add();
  series.active.add(1);
  let uncredited = 0;
  socket.on("data", (chunk: Buffer) => {
    if (!stream.write(chunk)) socket.pause();
  });
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
      if (socket.write(chunk)) stream.consumed(chunk.length);
      else uncredited += chunk.length;
    },
    onEnd: () => socket.end(),
    onReset: () => socket.destroy(),
    onDrain: () => socket.resume(),
  });
}
