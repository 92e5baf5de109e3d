import { Duplex } from "node:stream";
import type { Socket } from "node:net";

/**
 * The socket as a stream that first yields the bytes already read. Node's
 * HTTP/2 session reads the socket's handle directly and would miss bytes
 * given back with `unshift`; on a plain stream it reads through JS instead.
 */
export function replayed(socket: Socket, head: Buffer): Duplex {
  const stream = new Duplex({
    read: () => socket.resume(),
    write: (chunk: Buffer, _encoding, callback) => socket.write(chunk, callback),
    final: (callback) => socket.end(() => callback()),
    destroy: (err, callback) => {
      socket.destroy();
      callback(err);
    },
  });
  stream.push(head);
  socket.on("data", (chunk: Buffer) => {
    if (!stream.push(chunk)) socket.pause();
  });
  socket.once("end", () => stream.push(null));
  socket.once("close", () => stream.destroy());
  return stream;
}
