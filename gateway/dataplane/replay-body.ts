import type { Readable } from "node:stream";

/** Where an attempt's request body goes: a stream (HTTP/2) or a pooled HTTP/1.1 connection's framing writer. */
export interface BodySink {
  /** Returns false when the sink is full: the source then waits for "drain". */
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: "drain", listener: () => void): unknown;
}

/**
 * A request body that can be sent again to another endpoint. Chunks stream to
 * the current attempt as they arrive and are also kept, up to `capBytes`; past
 * the cap they are dropped and the body can no longer be replayed (one attempt
 * only from then on). With no attempt attached, the source is paused at the
 * cap (backpressure), so nothing is lost while an endpoint is being chosen.
 */
export class ReplayBody {
  private chunks: Buffer[] = [];
  private size = 0;
  private sink: BodySink | undefined;
  private overflowed = false;
  private ended = false;
  private readonly capBytes: number;
  private readonly source: Readable;

  /** `empty`: the request is known to have no body (no framing at all); the source is then not read. */
  constructor(options: { source: Readable; capBytes: number; empty?: boolean }) {
    this.capBytes = options.capBytes;
    this.source = options.source;
    if (options.empty) {
      this.ended = true;
      return;
    }
    this.source.on("data", (chunk: Buffer) => this.onData(chunk));
    this.source.once("end", () => {
      this.ended = true;
      this.sink?.end();
    });
  }

  /** Every byte sent so far is still held, so another attempt can start from the beginning. */
  get replayable(): boolean {
    return !this.overflowed;
  }

  /** The whole body arrived and is held. */
  get complete(): boolean {
    return this.ended && !this.overflowed;
  }

  /** Sends what is held, then the rest as it arrives, to `sink`. Returns false if the body cannot be replayed. */
  attach(sink: BodySink): boolean {
    if (this.overflowed) return false;
    this.sink = sink;
    for (const c of this.chunks) sink.write(c);
    if (this.size > this.capBytes) this.overflow();
    if (this.ended) sink.end();
    else this.source.resume();
    return true;
  }

  /** Stops feeding the current attempt (it failed or was abandoned). */
  detach(): void {
    this.sink = undefined;
  }

  private onData(chunk: Buffer): void {
    if (!this.overflowed) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    }
    const sink = this.sink;
    if (!sink) {
      if (this.size > this.capBytes) this.source.pause();
      return;
    }
    if (this.size > this.capBytes) this.overflow();
    if (!sink.write(chunk)) {
      this.source.pause();
      sink.once("drain", () => {
        if (this.sink === sink) this.source.resume();
      });
    }
  }

  private overflow(): void {
    this.overflowed = true;
    this.chunks = [];
  }
}
