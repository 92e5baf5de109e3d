import type { Duplex } from "node:stream";
import { GatewayError } from "./errors.ts";
import {
  encodeFrame,
  encodeOpen,
  encodeReset,
  encodeWindow,
  FrameDecoder,
  FrameType,
  MUX_HEADER_BYTES,
  MUX_INITIAL_WINDOW_BYTES,
  MUX_MAX_FRAME_PAYLOAD_BYTES,
  MUX_MAX_WINDOW_BYTES,
  MUX_PING_PAYLOAD_BYTES,
  MuxProtocolError,
  resetReason,
  type Frame,
  type MuxResetReason,
  writeHeader,
} from "./mux-framing.ts";

/** The highest stream id; a client that reaches it stops opening streams on the session. */
const MAX_STREAM_ID = 2 ** 32 - 1;

/** A stream open that did not get its OPEN_ACK: reset by the peer (with its reason) or lost with the tunnel. */
export class MuxStreamRefusedError extends GatewayError {
  constructor(readonly reason: MuxResetReason) {
    super("FEDGATE_GATEWAY_MUX_STREAM_REFUSED", `the peer gateway refused the stream: ${reason}`, { retryable: true });
  }
}

/** What a stream delivers to whoever relays it; set once with `attach`. */
export interface MuxStreamHandlers {
  onData(chunk: Buffer): void;
  /** The peer sent END: no more data in this direction. */
  onEnd(): void;
  /** The stream was reset by the peer or lost with its tunnel. */
  onReset(reason: MuxResetReason): void;
  /** The send window reopened after `write` returned false. */
  onDrain(): void;
  /** Its tunnel got or sent GOAWAY: the stream carries on, but whoever reuses it (a pooled connection) should let it end. */
  onGoAway?(): void;
}

type Early = { kind: "data"; chunk: Buffer } | { kind: "end" } | { kind: "reset"; reason: MuxResetReason };

/**
 * One relayed connection inside a tunnel. Sending is bounded by the peer's
 * window (`write` returns false when data is held back; `onDrain` says when
 * to go on); received bytes are credited back with `consumed` once the local
 * socket took them, so a slow reader only stalls its own stream.
 */
export class MuxStream {
  acked = false;
  closed = false;
  localEnded = false;
  remoteEnded = false;
  private handlers: MuxStreamHandlers | undefined;
  private early: Early[] = [];
  private sendWindow = MUX_INITIAL_WINDOW_BYTES;
  /** Bytes the peer may still send before we grant more. */
  private recvWindow = MUX_INITIAL_WINDOW_BYTES;
  private uncredited = 0;
  private held: Buffer[] = [];
  private endWhenFlushed = false;
  /** `write` returned false; onDrain is owed. */
  private blocked = false;
  /** Client side: settles the open. */
  opening: { resolve: (s: MuxStream) => void; reject: (err: Error) => void } | undefined;

  constructor(
    private readonly session: MuxSession,
    readonly id: number,
    readonly service: string,
  ) {}

  /** Its tunnel takes no new streams (GOAWAY sent or received) or is gone. */
  get tunnelGoingAway(): boolean {
    return this.session.goingAway || this.session.closed;
  }

  /** Its tunnel got or sent GOAWAY (handlers set later ask `tunnelGoingAway`). */
  notifyGoAway(): void {
    this.handlers?.onGoAway?.();
  }

  /** Sets where incoming data goes; anything that arrived before is delivered now. */
  attach(handlers: MuxStreamHandlers): void {
    this.handlers = handlers;
    const early = this.early;
    this.early = [];
    for (const e of early) this.deliver(e);
  }

  /** Server side: a backend accepted; the client may send. */
  accept(): void {
    if (this.closed || this.acked) return;
    this.acked = true;
    this.session.send(encodeFrame(FrameType.OPEN_ACK, this.id));
  }

  /**
   * Sends `chunk` as far as the window allows; false when some is held (pause
   * the source until onDrain). A `transient` chunk's memory is reused once
   * this returns (a shared read buffer): it is copied, never kept.
   */
  write(chunk: Buffer, transient = false): boolean {
    if (this.closed || this.localEnded) return true;
    if (this.held.length) {
      this.held.push(transient ? Buffer.from(chunk) : chunk);
      return !(this.blocked = true);
    }
    const sent = this.sendSome(chunk, transient);
    if (sent === chunk.length) return true;
    const rest = chunk.subarray(sent);
    this.held.push(transient ? Buffer.from(rest) : rest);
    return !(this.blocked = true);
  }

  /** Half-closes our direction (after held data). */
  end(): void {
    if (this.closed || this.localEnded || this.endWhenFlushed) return;
    if (this.held.length) {
      this.endWhenFlushed = true;
      return;
    }
    this.sendEnd();
  }

  reset(reason: MuxResetReason): void {
    if (this.closed) return;
    this.session.send(encodeReset(this.id, reason));
    this.close();
    this.opening?.reject(new MuxStreamRefusedError(reason));
    this.opening = undefined;
  }

  /** `n` received bytes left our hands: let the peer send that much more (batched). */
  consumed(n: number): void {
    if (this.closed || this.remoteEnded) return;
    this.uncredited += n;
    if (this.uncredited < MUX_INITIAL_WINDOW_BYTES / 2) return;
    this.recvWindow += this.uncredited;
    this.session.send(encodeWindow(this.id, this.uncredited));
    this.uncredited = 0;
  }

  /** A frame for this stream, from the session's reader. */
  receive(frame: Frame): void {
    switch (frame.type) {
      case FrameType.OPEN_ACK:
        if (this.acked || !this.opening) throw new MuxProtocolError("unexpected_frame", `OPEN_ACK on stream ${this.id}`);
        this.acked = true;
        this.opening.resolve(this);
        this.opening = undefined;
        return;
      case FrameType.DATA: {
        if (!this.acked) throw new MuxProtocolError("data_before_ack", `DATA on stream ${this.id} before it was acknowledged`);
        if (this.remoteEnded) throw new MuxProtocolError("data_after_end", `DATA on stream ${this.id} after END`);
        const n = frame.payload.length;
        if (n > this.recvWindow) throw new MuxProtocolError("window_exceeded", `${n} bytes on stream ${this.id} with a window of ${this.recvWindow}`);
        this.recvWindow -= n;
        // The common case, straight to the relay (no queue entry per piece).
        if (this.handlers) this.handlers.onData(frame.payload);
        else this.early.push({ kind: "data", chunk: frame.payload });
        return;
      }
      case FrameType.END:
        if (!this.acked) throw new MuxProtocolError("data_before_ack", `END on stream ${this.id} before it was acknowledged`);
        if (this.remoteEnded) throw new MuxProtocolError("data_after_end", `END twice on stream ${this.id}`);
        this.remoteEnded = true;
        this.deliver({ kind: "end" });
        this.finishIfDone();
        return;
      case FrameType.RESET: {
        const reason = resetReason(frame.payload);
        this.close();
        this.fail(reason);
        return;
      }
      case FrameType.WINDOW: {
        const credit = frame.payload.readUInt32BE(0);
        if (this.sendWindow + credit > MUX_MAX_WINDOW_BYTES) throw new MuxProtocolError("window_overflow", `window of stream ${this.id} over 2^31-1`);
        this.sendWindow += credit;
        this.flushHeld();
        return;
      }
      default:
        throw new MuxProtocolError("unexpected_frame", `frame type ${frame.type} on stream ${this.id}`);
    }
  }

  /** The tunnel went away (or the peer reset): the open fails, or the relay is told. */
  fail(reason: MuxResetReason): void {
    this.closed = true;
    if (this.opening) {
      this.opening.reject(new MuxStreamRefusedError(reason));
      this.opening = undefined;
      return;
    }
    this.deliver({ kind: "reset", reason });
  }

  private deliver(e: Early): void {
    const h = this.handlers;
    if (!h) return void this.early.push(e);
    if (e.kind === "data") h.onData(e.chunk);
    else if (e.kind === "end") h.onEnd();
    else h.onReset(e.reason);
  }

  private sendSome(chunk: Buffer, transient = false): number {
    let offset = 0;
    while (offset < chunk.length && this.sendWindow > 0) {
      const n = Math.min(chunk.length - offset, this.sendWindow, MUX_MAX_FRAME_PAYLOAD_BYTES);
      const piece = offset === 0 && n === chunk.length ? chunk : chunk.subarray(offset, offset + n);
      if (transient) this.session.sendDataCopy(this.id, piece);
      else this.session.sendData(this.id, piece);
      this.sendWindow -= n;
      offset += n;
    }
    return offset;
  }

  private flushHeld(): void {
    while (this.held.length && this.sendWindow > 0) {
      const chunk = this.held[0]!;
      const sent = this.sendSome(chunk);
      if (sent < chunk.length) {
        this.held[0] = chunk.subarray(sent);
        return;
      }
      this.held.shift();
    }
    if (this.held.length) return;
    if (this.endWhenFlushed) this.sendEnd();
    if (!this.blocked) return;
    this.blocked = false;
    this.handlers?.onDrain();
  }

  private sendEnd(): void {
    this.localEnded = true;
    this.endWhenFlushed = false;
    this.session.send(encodeFrame(FrameType.END, this.id));
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (this.localEnded && this.remoteEnded) this.close();
  }

  private close(): void {
    if (this.closed && !this.session.has(this)) return;
    this.closed = true;
    this.held = [];
    this.session.forget(this);
  }
}

/** fedgate-mux/2 keep-alive timing (bootstrap `mux_keepalive_interval_ms`, `mux_keepalive_timeout_ms`). */
export interface MuxKeepAlive {
  intervalMs: number;
  timeoutMs: number;
}

export interface MuxSessionOptions {
  socket: Duplex;
  role: "client" | "server";
  /** Server: more concurrent streams than this is a protocol error. Client: the session stops offering itself. */
  maxStreams: number;
  /** Server: a peer opened a stream; answer with `accept()` or `reset()`. */
  onStream?: (stream: MuxStream) => void;
  /** Bad input from the peer; the session is already being destroyed. */
  onProtocolError?: (err: MuxProtocolError) => void;
  /** The stream count fell to zero. */
  onIdle?: () => void;
  /** The socket closed; every stream has failed. */
  onClose?: () => void;
  /** fedgate-mux/2 was negotiated: PING is answered with PONG (else both are protocol errors). */
  pings?: boolean;
  /** With `pings`, either role: send a PING after `intervalMs` without a byte from the peer; none within `timeoutMs` after it => dead. */
  keepAlive?: MuxKeepAlive;
  /** The peer sent nothing within the keep-alive timeout; the session is already being destroyed. */
  onKeepAliveTimeout?: () => void;
}

/**
 * Both ends of a fedgate-mux/1 tunnel over one (mTLS) socket. Every frame
 * produced during one event-loop turn, for any stream, goes out as one write
 * on the socket: one TLS record encryption pass and one syscall for many
 * streams, which is what the per-connection relay paid per chunk.
 */
export class MuxSession {
  readonly socket: Duplex;
  readonly role: "client" | "server";
  private readonly options: MuxSessionOptions;
  private readonly streams = new Map<number, MuxStream>();
  private readonly decoder = new FrameDecoder();
  /** Client: the last id handed out. Server: the highest id the peer opened. */
  private lastId = 0;
  /** This turn's output: whole control frames, and DATA payloads whose 9-byte header `flush` writes in place. */
  private out: Buffer[] = [];
  /** Per `out` entry: the stream id of a DATA payload, or -1 for a whole frame. */
  private outStreams: number[] = [];
  /** Bytes in `out`, headers of DATA payloads included. */
  private outBytes = 0;
  /** DATA payload bytes in `out` (a frame's worth is flushed at once). */
  private outData = 0;
  private flushScheduled = false;
  /** The socket asked for 'drain': frames wait in `out` and leave together when it comes. */
  private awaitingDrain = false;
  /** GOAWAY sent or received: no new streams; the socket ends once the last stream does. */
  goingAway = false;
  closed = false;
  /** Socket reads so far: a count, so the keep-alive costs the read path one increment. */
  private reads = 0;
  private readsSeen = 0;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;

  constructor(options: MuxSessionOptions) {
    this.options = options;
    this.socket = options.socket;
    this.role = options.role;
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    if (options.pings && options.keepAlive) this.startKeepAlive(options.keepAlive);
    this.socket.on("error", () => this.socket.destroy());
    // The peer ended the tunnel: so do we (a socket that allows half-open would otherwise linger).
    this.socket.once("end", () => this.endSocket());
    this.socket.once("close", () => this.onSocketClose());
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** Client: whether a new stream may go on this session. */
  get canOpen(): boolean {
    return !this.closed && !this.goingAway && this.streams.size < this.options.maxStreams && this.lastId < MAX_STREAM_ID;
  }

  /** Client: opens a stream to `service`; resolves on the peer's OPEN_ACK, rejects with MuxStreamRefusedError. */
  open(service: string): Promise<MuxStream> {
    if (!this.canOpen) return Promise.reject(new MuxStreamRefusedError("refused"));
    this.lastId += 1;
    const stream = new MuxStream(this, this.lastId, service);
    this.streams.set(stream.id, stream);
    this.send(encodeOpen(stream.id, service));
    return new Promise((resolve, reject) => (stream.opening = { resolve, reject }));
  }

  /** No new streams from now on (drain, rotation); the tunnel closes when its last stream ends. */
  goAway(): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.send(encodeFrame(FrameType.GOAWAY, 0));
    for (const s of this.streams.values()) s.notifyGoAway();
    this.endIfIdle();
  }

  destroy(): void {
    this.socket.destroy();
  }

  has(stream: MuxStream): boolean {
    return this.streams.get(stream.id) === stream;
  }

  /** Queues a frame; all frames of this event-loop turn leave in one write. */
  send(frame: Buffer): void {
    if (this.closed) return;
    this.out.push(frame);
    this.outStreams.push(-1);
    this.outBytes += frame.length;
    this.scheduleFlush();
  }

  sendData(id: number, chunk: Buffer): void {
    if (this.closed) return;
    this.out.push(chunk);
    this.outStreams.push(id);
    this.outBytes += MUX_HEADER_BYTES + chunk.length;
    this.queuedData(chunk.length);
  }

  /**
   * `sendData` for a payload whose memory is reused once this returns (a
   * shared read buffer): copied at once, behind its header, as a whole frame
   * (a bulk frame then goes out without another copy in `assemble`).
   */
  sendDataCopy(id: number, chunk: Buffer): void {
    if (this.closed) return;
    const frame = Buffer.allocUnsafe(MUX_HEADER_BYTES + chunk.length);
    chunk.copy(frame, writeHeader(frame, 0, FrameType.DATA, id, chunk.length));
    this.out.push(frame);
    this.outStreams.push(-1);
    this.outBytes += frame.length;
    this.queuedData(chunk.length);
  }

  private queuedData(bytes: number): void {
    this.outData += bytes;
    // Bulk data gains nothing from waiting for the turn's end: a full frame's worth goes out now.
    if (this.outData >= MUX_MAX_FRAME_PAYLOAD_BYTES) this.flush();
    else this.scheduleFlush();
  }

  forget(stream: MuxStream): void {
    if (!this.has(stream)) return;
    this.streams.delete(stream.id);
    if (this.streams.size === 0) {
      this.options.onIdle?.();
      this.endIfIdle();
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate runs after the poll phase: every socket read in this turn has queued its frames by then.
    setImmediate(() => this.flush());
  }

  /** Writes the turn's frames; `force` writes them even on a congested socket (before ending it). */
  private flush(force = false): void {
    this.flushScheduled = false;
    const out = this.out;
    if (!out.length || this.closed || this.socket.destroyed || (this.awaitingDrain && !force)) return;
    // A congested socket would queue each write in JS and join them in C++ (a copy per byte):
    // keep the frames and write them as one buffer on 'drain' instead.
    if (this.socket.writableNeedDrain && !force) {
      this.awaitingDrain = true;
      this.socket.once("drain", () => {
        this.awaitingDrain = false;
        this.flush();
      });
      return;
    }
    const wire = out.length === 1 && this.outStreams[0] === -1 ? out[0]! : this.assemble();
    this.out = [];
    this.outStreams = [];
    this.outBytes = 0;
    this.outData = 0;
    this.socket.write(wire);
  }

  /** The turn's frames in one buffer, DATA headers written in place (no header buffer per frame). */
  private assemble(): Buffer {
    const wire = Buffer.allocUnsafe(this.outBytes);
    let at = 0;
    for (let i = 0; i < this.out.length; i++) {
      const id = this.outStreams[i]!;
      const piece = this.out[i]!;
      if (id >= 0) at = writeHeader(wire, at, FrameType.DATA, id, piece.length);
      at += piece.copy(wire, at);
    }
    return wire;
  }

  private endIfIdle(): void {
    if (!this.goingAway || this.streams.size > 0 || this.closed) return;
    setImmediate(() => {
      if (this.streams.size === 0 && !this.closed) this.endSocket();
    });
  }

  /**
   * Every interval, a PING if nothing arrived since the last look; any byte
   * from the peer (a PONG or other traffic) within the timeout keeps the
   * tunnel. A peer that hangs with its socket open (stopped process,
   * black-holed network) would otherwise be noticed only by stream opens
   * timing out, and established streams never.
   */
  private startKeepAlive(k: { intervalMs: number; timeoutMs: number }): void {
    this.keepAliveTimer = setInterval(() => {
      if (this.pingTimer) return;
      if (this.reads !== this.readsSeen) {
        this.readsSeen = this.reads;
        return;
      }
      this.send(encodeFrame(FrameType.PING, 0, Buffer.alloc(MUX_PING_PAYLOAD_BYTES)));
      const readsAtPing = this.reads;
      this.pingTimer = setTimeout(() => {
        // Timers run before the loop's poll phase: after a stall of our own event loop, an answer may sit
        // unread in the socket. setImmediate looks again once this turn's reads are done.
        setImmediate(() => {
          this.pingTimer = undefined;
          if (this.reads !== readsAtPing || this.closed) return;
          this.options.onKeepAliveTimeout?.();
          this.socket.destroy();
        });
      }, k.timeoutMs);
      this.pingTimer.unref();
    }, k.intervalMs);
    this.keepAliveTimer.unref();
  }

  /** Ends our direction after every queued frame (those waiting for 'drain' too). */
  private endSocket(): void {
    this.flush(true);
    this.socket.end();
  }

  private onData(chunk: Buffer): void {
    this.reads += 1;
    if (this.closed) return;
    try {
      this.decoder.feed(chunk, this.onFrame);
    } catch (err) {
      if (!(err instanceof MuxProtocolError)) throw err;
      this.options.onProtocolError?.(err);
      this.socket.destroy();
    }
  }

  /** The decoder's sink, bound once (not a closure per read). */
  private readonly onFrame = (frame: Frame): void => {
    if (!this.closed) this.handle(frame);
  };

  private handle(frame: Frame): void {
    if (frame.type === FrameType.GOAWAY) {
      this.goingAway = true;
      for (const s of this.streams.values()) s.notifyGoAway();
      this.endIfIdle();
      return;
    }
    if (frame.type === FrameType.PING || frame.type === FrameType.PONG) return this.onPing(frame);
    if (frame.type === FrameType.OPEN) return this.onOpen(frame);
    const stream = this.streams.get(frame.stream);
    if (stream) return stream.receive(frame);
    // A frame for a stream closed on our side may cross our RESET or END on the wire: dropped.
    if (frame.stream > this.lastId) throw new MuxProtocolError("unknown_stream", `frame type ${frame.type} on stream ${frame.stream}, never opened`);
  }

  /** PING is answered at once; a PONG's only job was to be a byte from the peer (counted in onData). */
  private onPing(frame: Frame): void {
    if (!this.options.pings) throw new MuxProtocolError("unexpected_frame", `frame type ${frame.type} on a fedgate-mux/1 tunnel`);
    if (frame.type === FrameType.PING) this.send(encodeFrame(FrameType.PONG, 0, frame.payload));
  }

  private onOpen(frame: Frame): void {
    if (this.role !== "server") throw new MuxProtocolError("unexpected_frame", "OPEN sent to the dialling side");
    if (frame.stream <= this.lastId) throw new MuxProtocolError("stream_id_reused", `OPEN of stream ${frame.stream} after ${this.lastId}`);
    this.lastId = frame.stream;
    if (this.goingAway) return this.send(encodeReset(frame.stream, "refused"));
    if (this.streams.size >= this.options.maxStreams) throw new MuxProtocolError("too_many_streams", `more than ${this.options.maxStreams} concurrent streams`);
    const stream = new MuxStream(this, frame.stream, frame.payload.toString("latin1"));
    this.streams.set(stream.id, stream);
    this.options.onStream?.(stream);
  }

  private onSocketClose(): void {
    this.closed = true;
    clearInterval(this.keepAliveTimer);
    clearTimeout(this.pingTimer);
    this.out = [];
    this.outStreams = [];
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) s.fail("tunnel_closed");
    this.options.onClose?.();
  }
}
