import { Duplex } from "node:stream";
import { GatewayError } from "./errors.ts";
import type { MuxResetReason } from "./mux-framing.ts";
import type { MuxStream } from "./mux-session.ts";

/** A tunnel stream was reset (by the peer, or lost with its tunnel) while it carried a connection. */
export class MuxStreamResetError extends GatewayError {
  constructor(readonly reason: MuxResetReason) {
    super("FEDGATE_GATEWAY_MUX_STREAM_RESET", `the tunnel stream was reset: ${reason}`, { retryable: false });
  }
}

/**
 * A tunnel stream seen as a socket, for code written against one (pooled
 * HTTP/1.1 connections, node:http2 sessions): data and END both ways, a reset
 * is an error, `write` waits for the peer's window, and received bytes are
 * credited back once the reader took them (not while it is paused), so a slow
 * reader stalls only its own stream. Its tunnel's GOAWAY (either way) is emitted as
 * `goaway`: the stream carries on, but should carry no new exchange.
 */
export class MuxStreamDuplex extends Duplex {
  readonly stream: MuxStream;
  private uncredited = 0;
  /** Where received bytes go directly while the socket flows (`setDataSink`). */
  private sink: ((chunk: Buffer) => void) | undefined;
  /** The write waiting for the peer's window. */
  private pending: (() => void) | undefined;

  constructor(stream: MuxStream) {
    // A peer's END ends our side too, as a TCP client socket does.
    super({ allowHalfOpen: false });
    this.stream = stream;
    stream.attach({
      onData: (chunk) => {
        // A flowing reader with nothing buffered takes the bytes directly (no Readable state, 'data' event or read-more tick).
        const sink = this.sink;
        if (sink && this.readableLength === 0 && this.readableFlowing === true && !this.destroyed) {
          stream.consumed(chunk.length);
          return sink(chunk);
        }
        if (this.push(chunk)) stream.consumed(chunk.length);
        else this.uncredited += chunk.length;
      },
      onEnd: () => this.push(null),
      onReset: (reason) => this.destroy(new MuxStreamResetError(reason)),
      onDrain: () => {
        const done = this.pending;
        this.pending = undefined;
        done?.();
      },
      onGoAway: () => this.emit("goaway"),
    });
  }

  /** The tunnel stops taking new streams (GOAWAY, rotation) or is gone: this connection should not start another exchange. */
  get retiring(): boolean {
    return this.stream.closed || this.stream.tunnelGoingAway;
  }

  /**
   * Received bytes go to `sink` directly while the socket flows with nothing
   * buffered, and as 'data' events otherwise (paused, or bytes buffered while
   * it was): the owner listens to both with the same function, and order holds.
   */
  setDataSink(sink: (chunk: Buffer) => void): void {
    this.sink = sink;
  }

  /**
   * Writes `chunk` straight to the tunnel stream when the Writable holds
   * nothing (no write state, no nextTick per write, as a pooled connection's
   * request head needs); otherwise through `write`, behind what waits. Data
   * the window holds back leaves in order when the peer grants more.
   */
  writeNow(chunk: Buffer): void {
    if (this.writableLength > 0 || this.writableCorked > 0 || this.writableEnded || this.destroyed) {
      this.write(chunk);
      return;
    }
    this.stream.write(chunk);
  }

  override _read(): void {
    if (this.uncredited === 0) return;
    this.stream.consumed(this.uncredited);
    this.uncredited = 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.send(chunk, done);
  }

  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void): void {
    this.send(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    this.stream.end();
    done();
  }

  private send(chunk: Buffer, done: () => void): void {
    if (this.stream.write(chunk)) done();
    else this.pending = done;
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // Closed before both sides ended: the peer must drop its end of the stream too.
    if (!this.stream.closed) this.stream.reset("cancel");
    this.pending = undefined;
    done(err);
  }
}
