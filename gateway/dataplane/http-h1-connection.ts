import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { Readable, type Duplex } from "node:stream";
import type { AttemptResult, UpstreamResponse } from "./http-attempt.ts";
import { endToEndHeaders, type BodyFraming } from "./http-downstream.ts";
import { ResponseParser, type ResponseHead } from "./http-response-parser.ts";
import { MuxStreamDuplex } from "./mux-stream-duplex.ts";
import type { BodySink, ReplayBody } from "./replay-body.ts";

export interface H1Request {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** End-to-end headers (lower-case, already validated by the downstream parser). */
  readonly headers: OutgoingHttpHeaders;
  readonly framing: BodyFraming;
  readonly body: ReplayBody;
}

const LAST_CHUNK = "0\r\n\r\n";
const never = () => false;
const NO_BODY = Buffer.alloc(0);

/**
 * One pooled upstream HTTP/1.1 connection on a raw socket, one exchange at a
 * time. The request head and whatever body is already held go out in one
 * corked write; the response is read by the strict `ResponseParser`. A
 * response whose body came with its head (the usual small answer) is handed
 * over whole, with no stream. Once both directions ended cleanly and the
 * server allows it, the connection goes back to the pool (`release`);
 * anything unexpected destroys it. It is the body sink of its exchange's
 * request (framing chunks when the request came chunked). The socket is an
 * mTLS or plain socket, or a stream in a tunnel to a peer gateway
 * (MuxStreamDuplex).
 */
export class H1Connection implements BodySink {
  readonly socket: Duplex;
  /** Whether the connection should carry no further exchange (its tunnel goes away, secrets rotated). */
  readonly retiring: () => boolean;
  /** When it last went back to the pool (Date.now()), for the pool's idle timeout. */
  idleSinceMs = 0;
  private readonly release: (conn: H1Connection) => void;
  private readonly parser: ResponseParser;
  /** It carried an exchange before (a close before any answer then means the server dropped an idle connection). */
  private reused = false;
  // The exchange in progress; `settle` is set from send() until the response head is handed over.
  private active = false;
  private settle: ((r: AttemptResult) => void) | undefined;
  private chunked = false;
  private requestDone = false;
  private gotBytes = false;
  private head: ResponseHead | undefined;
  private held: Buffer[] = [];
  private trailers: IncomingHttpHeaders | undefined;
  private stream: Readable | undefined;
  private response: H1Response | undefined;
  /** Counts exchanges, so that a late cancel of an old response cannot touch a newer exchange. */
  private exchange = 0;

  constructor(options: { socket: Duplex; release: (conn: H1Connection) => void; retiring?: () => boolean }) {
    this.socket = options.socket;
    this.release = options.release;
    this.retiring = options.retiring ?? never;
    this.parser = new ResponseParser({
      onHead: (head) => (this.head = head),
      onBody: (chunk) => this.onBody(chunk),
      onEnd: (trailers) => (this.trailers = trailers),
    });
    const onData = (chunk: Buffer) => this.onData(chunk);
    this.socket.on("data", onData);
    if (this.socket instanceof MuxStreamDuplex) this.socket.setDataSink(onData);
    this.socket.on("close", () => this.onClose());
    // 'close' follows every error; the exchange is failed there.
    this.socket.on("error", () => undefined);
  }

  get idle(): boolean {
    // A half-closed socket (the server ended it) cannot carry another exchange.
    return !this.active && !this.socket.destroyed && this.socket.readable && this.socket.writable;
  }

  /** Sends the request; `settle` hears of the response head or of a failure, exactly once. */
  send(request: H1Request, settle: (r: AttemptResult) => void): void {
    this.active = true;
    this.exchange += 1;
    this.settle = settle;
    this.chunked = request.framing === "chunked";
    this.requestDone = request.framing === "none";
    this.gotBytes = false;
    this.head = undefined;
    this.held = [];
    this.stream = undefined;
    this.response = undefined;
    this.trailers = undefined;
    this.parser.reset(request.method === "HEAD");
    const socket = this.socket;
    // A request without a body is its head alone: one write, straight into the tunnel stream when it is one.
    if (request.framing === "none" && socket instanceof MuxStreamDuplex) {
      socket.writeNow(Buffer.from(requestHead(request), "latin1"));
      return;
    }
    socket.cork();
    socket.write(requestHead(request), "latin1");
    request.body.attach(this);
    socket.uncork();
  }

  /** Puts a connection that carried nothing yet into the pool. */
  park(): void {
    if (this.idle) this.release(this);
  }

  /** Closes an idle connection cleanly (FIN, or END on a tunnel stream). */
  close(): void {
    this.socket.end();
  }

  /** Drops the connection (the exchange was abandoned or failed). */
  destroy(): void {
    this.socket.destroy();
  }

  write(chunk: Buffer): boolean {
    if (!this.active || this.requestDone || chunk.length === 0) return true;
    if (!this.chunked) return this.socket.write(chunk);
    this.socket.write(`${chunk.length.toString(16)}\r\n`, "latin1");
    this.socket.write(chunk);
    return this.socket.write("\r\n", "latin1");
  }

  end(): void {
    if (!this.active || this.requestDone) return;
    if (this.chunked) this.socket.write(LAST_CHUNK, "latin1");
    this.requestDone = true;
    this.maybeRelease();
  }

  once(event: "drain", listener: () => void): this {
    this.socket.once(event, listener);
    return this;
  }

  private onBody(chunk: Buffer): void {
    if (!this.stream) this.held.push(chunk);
    else if (!this.stream.push(chunk)) this.socket.pause();
  }

  private onData(chunk: Buffer): void {
    // Bytes nobody asked for: the connection is out of step.
    if (!this.active) return this.destroy();
    this.gotBytes = true;
    try {
      this.parser.execute(chunk);
    } catch (err) {
      return this.fail(err as Error);
    }
    if (this.settle && this.head) this.deliver(this.head);
    if (this.parser.done) {
      this.ended();
      this.maybeRelease();
    }
  }

  private ended(): void {
    if (this.response) this.response.trailerFields = this.trailers;
    this.stream?.push(null);
  }

  /** Hands the response over: whole when it already ended, else as a stream of the rest. */
  private deliver(head: ResponseHead): void {
    const settle = this.settle!;
    this.settle = undefined;
    let body: Buffer | Readable;
    if (this.parser.done) body = this.held.length === 0 ? NO_BODY : this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held);
    else {
      const stream = new Readable({ read: () => this.socket.resume() });
      for (const c of this.held) stream.push(c);
      this.stream = body = stream;
    }
    this.held = [];
    this.response = new H1Response({ conn: this, exchange: this.exchange, head, body });
    settle({ ok: true, response: this.response });
  }

  /** Abandons `exchange` if it is still in progress on this connection. */
  cancel(exchange: number): void {
    if (this.active && this.exchange === exchange) this.destroy();
  }

  private maybeRelease(): void {
    if (!this.active || !this.parser.done || !this.requestDone || this.settle) return;
    if (!this.head?.keepAlive || this.parser.trailing) return this.destroy();
    this.active = false;
    this.reused = true;
    // A response stream that filled up paused the socket; the next exchange must read.
    this.socket.resume();
    this.release(this);
  }

  private onClose(): void {
    if (!this.active || this.parser.done) return;
    try {
      this.parser.finish();
    } catch (err) {
      return this.fail(err as Error);
    }
    if (this.settle && this.head) this.deliver(this.head);
    this.ended();
  }

  private fail(err: Error): void {
    const settle = this.settle;
    this.settle = undefined;
    this.active = false;
    this.destroy();
    if (settle) settle({ ok: false, failure: this.reused && !this.gotBytes ? "refused_stream" : "reset" });
    else this.stream?.destroy(err);
  }
}

class H1Response implements UpstreamResponse {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly raw: IncomingHttpHeaders;
  readonly headersOnly = false;
  readonly body: Buffer | Readable;
  /** Set when the response ended (the connection may carry another exchange by the time they are read). */
  trailerFields: IncomingHttpHeaders | undefined;
  private readonly conn: H1Connection;
  private readonly exchange: number;

  constructor(options: { conn: H1Connection; exchange: number; head: ResponseHead; body: Buffer | Readable }) {
    this.conn = options.conn;
    this.exchange = options.exchange;
    this.status = options.head.status;
    this.raw = options.head.headers;
    this.headers = endToEndHeaders(options.head.headers);
    this.body = options.body;
  }

  trailers(): IncomingHttpHeaders | undefined {
    return this.trailerFields;
  }

  cancel(): void {
    this.conn.cancel(this.exchange);
  }
}

function requestHead(request: H1Request): string {
  let head = `${request.method} ${request.path} HTTP/1.1\r\nhost: ${request.authority}\r\n`;
  const headers = request.headers;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) head += `${name}: ${v}\r\n`;
    else head += `${name}: ${value}\r\n`;
  }
  if (request.framing === "chunked") head += "transfer-encoding: chunked\r\n";
  return `${head}\r\n`;
}
