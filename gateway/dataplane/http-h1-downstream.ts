import { STATUS_CODES, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import type { Socket } from "node:net";
import { Readable, Writable } from "node:stream";
import { endToEndHeaders, isGrpc, type BodyFraming, type Downstream } from "./http-downstream.ts";
import { DownstreamProtocolError, RequestParser, type RequestHead } from "./http-request-parser.ts";

/** An idle keep-alive connection (no request begun) is closed after this, as Node's HTTP server does. */
export const KEEP_ALIVE_IDLE_TIMEOUT_MS = 5_000;
const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
const LAST_CHUNK = "0\r\n";
const CRLF = "\r\n";
/** A whole response body up to this size goes out in the same string as its head (one write). */
const INLINE_BODY_BYTES = 16 * 1024;

export interface H1ServerConnectionOptions {
  socket: Socket;
  /** The most a request head may take (over it: 431). */
  maxHeadBytes: number;
  /** A request head must arrive whole within this of its first byte (else 408). */
  headTimeoutMs: number;
  /** Stands for the body of requests without one (never read). */
  emptyBody: Readable;
  onRequest(down: Downstream): void;
  onBadInput(reason: string, err: Error | undefined): void;
  onClose(conn: H1ServerConnection): void;
}

/**
 * One downstream HTTP/1.1 connection on the raw socket: the strict
 * `RequestParser` reads requests, each becomes a `Downstream` for the
 * forwarder, and its response is written straight to the socket (status
 * line, headers and a body that came whole in one write). Requests are
 * answered one at a time in order: the bytes of a pipelined request wait
 * until the response before it ended. A bad request is answered (400, 431,
 * 501, 505, 417) and the connection closed; a head not whole in time gets
 * 408. Time limits are checked by the listener's sweep (`expire`), so no
 * request arms a timer of its own.
 */
export class H1ServerConnection {
  readonly socket: Socket;
  private readonly parser: RequestParser;
  private readonly options: H1ServerConnectionOptions;
  /** The request being answered. */
  private exchange: H1Exchange | undefined;
  /** The request whose body is being read (the same one, until its body ended). */
  private reading: H1Exchange | undefined;
  /** A request whose head was just read: handed to the forwarder once the parser let go of the bytes. */
  private fresh: H1Exchange | undefined;
  /** Bytes of the next requests, read while the current one is answered. */
  private queued: Buffer | undefined;
  /** When the connection must have moved on (ms since epoch; 0: no limit while a request is served). */
  private deadline: number;
  private closing = false;
  private dead = false;

  constructor(options: H1ServerConnectionOptions) {
    this.options = options;
    this.socket = options.socket;
    this.deadline = Date.now() + options.headTimeoutMs;
    this.parser = new RequestParser({
      maxHeadBytes: options.maxHeadBytes,
      onHead: (head) => this.onHead(head),
      onBody: (chunk) => this.reading?.pushBody(chunk),
      onEnd: () => {
        this.reading?.pushBody(null);
        this.reading = undefined;
      },
    });
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.once("close", () => this.onSocketClose());
  }

  /** Takes the bytes read before the connection was handed over (the preface check). */
  start(head: Buffer): void {
    this.onData(head);
  }

  /** Closes the connection if it is idle, else once its current response ended (listener closing). */
  closeWhenIdle(): void {
    this.closing = true;
    if (!this.exchange && !this.parser.started) this.socket.destroy();
  }

  /** The sweep: a request head that is late gets 408, an idle connection is closed. */
  expire(now: number): void {
    if (this.deadline === 0 || now < this.deadline || this.dead) return;
    if (!this.parser.started && !this.queued) {
      this.socket.destroy();
      return;
    }
    this.options.onBadInput("headers_timeout", undefined);
    this.refuse(408);
  }

  private onData(chunk: Buffer): void {
    if (this.dead) return;
    if (this.exchange) {
      if (!this.parser.done) return this.parse(chunk);
      // The next request waits for the current response; past a head's worth, reading waits too.
      this.queued = this.queued ? Buffer.concat([this.queued, chunk]) : chunk;
      if (this.queued.length > this.options.maxHeadBytes) this.socket.pause();
      return;
    }
    if (!this.parser.started) this.deadline = Date.now() + this.options.headTimeoutMs;
    this.parse(chunk);
  }

  private parse(chunk: Buffer): void {
    let rest: Buffer | undefined;
    try {
      rest = this.parser.execute(chunk);
    } catch (err) {
      if (!(err instanceof DownstreamProtocolError)) throw err;
      this.options.onBadInput(err.reason, err);
      // Mid-body, a request already handed on is cut, not answered twice; one not handed on yet is answered.
      if (this.exchange && !this.fresh) this.socket.destroy();
      else {
        this.exchange = this.reading = this.fresh = undefined;
        this.refuse(err.status);
      }
      return;
    }
    if (rest && rest.length > 0) this.queued = this.queued ? Buffer.concat([rest, this.queued]) : rest;
    const fresh = this.fresh;
    this.fresh = undefined;
    if (fresh) this.options.onRequest(fresh);
  }

  private onHead(head: RequestHead): void {
    this.deadline = 0;
    const exchange = new H1Exchange(this, head, head.framing === "none" ? this.options.emptyBody : new Readable({ read: () => this.socket.resume() }));
    this.exchange = this.reading = this.fresh = exchange;
    if (head.expectContinue) this.socket.write(CONTINUE, "latin1");
  }

  /** Whether the connection can carry a request after the current one (decided when its response starts). */
  keepAliveAfter(head: RequestHead): boolean {
    // An unread request body would be taken for the next request.
    return head.keepAlive && !this.closing && this.parser.done;
  }

  /** The current response was written whole. */
  responseEnded(exchange: H1Exchange, keepAlive: boolean): void {
    if (this.exchange !== exchange) return;
    this.exchange = undefined;
    if (this.dead) return;
    if (!keepAlive) {
      this.dead = true;
      this.socket.end();
      return;
    }
    this.parser.reset();
    this.deadline = Date.now() + (this.queued ? this.options.headTimeoutMs : KEEP_ALIVE_IDLE_TIMEOUT_MS);
    const queued = this.queued;
    if (!queued) return;
    this.queued = undefined;
    this.socket.resume();
    // Not within the previous response's call stack.
    queueMicrotask(() => {
      if (!this.dead && !this.exchange) this.parse(queued);
    });
  }

  private refuse(status: number): void {
    this.dead = true;
    this.deadline = 0;
    this.socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, "latin1");
  }

  private onSocketClose(): void {
    this.dead = true;
    this.deadline = 0;
    // A body still being read when its response already ended (the connection was closing) ends here too.
    this.reading?.peerClosed();
    this.exchange?.peerClosed();
    this.exchange = this.reading = undefined;
    this.options.onClose(this);
  }
}

/** How a response body goes on the wire. */
type ResponseFraming = "none" | "length" | "chunked" | "close";

/** One request on an `H1ServerConnection` and its response. */
class H1Exchange implements Downstream {
  readonly protocol = "h1";
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly headers: OutgoingHttpHeaders;
  readonly body: Readable;
  readonly bodyFraming: BodyFraming;
  readonly grpc: boolean;
  headersSent = false;
  private finished = false;
  private readonly conn: H1ServerConnection;
  private readonly head: RequestHead;
  private readonly socket: Socket;
  private framing: ResponseFraming = "none";
  private keepAlive = false;
  /** The head is written into a corked socket, so a body that follows at once goes in the same write. */
  private corked = false;
  private writer: ChunkedBodyWriter | undefined;
  private closeListeners: (() => void)[] | undefined;

  constructor(conn: H1ServerConnection, head: RequestHead, body: Readable) {
    this.conn = conn;
    this.head = head;
    this.socket = conn.socket;
    this.method = head.method;
    this.path = head.target;
    this.authority = head.headers.host ?? "";
    // The gateway answers the expectation itself (100 Continue). Checked first: delete changes the object's shape.
    if (head.headers.expect !== undefined) delete head.headers.expect;
    this.headers = endToEndHeaders(head.headers);
    this.body = body;
    this.bodyFraming = head.framing;
    this.grpc = isGrpc(head.headers);
  }

  get closed(): boolean {
    return this.finished || this.socket.destroyed;
  }

  /** Request body bytes (null: the body ended). */
  pushBody(chunk: Buffer | null): void {
    if (this.body.push(chunk) === false && chunk) this.socket.pause();
  }

  respond(status: number, headers: OutgoingHttpHeaders, endStream: boolean): Writable | undefined {
    const text = this.responseHead(status, headers, endStream ? 0 : undefined);
    if (endStream) {
      this.socket.write(text, "latin1");
      this.ended();
      return undefined;
    }
    this.socket.cork();
    this.corked = true;
    this.socket.write(text, "latin1");
    process.nextTick(() => this.uncork());
    if (this.framing === "length" || this.framing === "close") return this.socket;
    return (this.writer = new ChunkedBodyWriter({ socket: this.socket, framed: this.framing === "chunked", done: (trailers) => this.lastChunk(trailers) }));
  }

  respondWhole(status: number, headers: OutgoingHttpHeaders, body: Buffer): void {
    const text = this.responseHead(status, headers, body.length);
    const content = this.framing === "none" ? undefined : body;
    // One write, so one syscall and no cork/uncork turn: a small body rides in the head's string.
    if (!content || content.length === 0) this.socket.write(text, "latin1");
    else if (content.length <= INLINE_BODY_BYTES) this.socket.write(text + content.toString("latin1"), "latin1");
    else {
      this.socket.cork();
      this.socket.write(text, "latin1");
      this.socket.write(content);
      this.socket.uncork();
    }
    this.ended();
  }

  end(trailers: IncomingHttpHeaders | undefined, last?: Buffer): void {
    if (this.finished || this.socket.destroyed) return;
    const writer = this.writer;
    if (writer) {
      if (writer.writableEnded) return;
      writer.trailers = trailers;
      if (last) writer.end(last);
      else writer.end();
      return;
    }
    if (last && last.length > 0) this.socket.write(last);
    this.ended();
  }

  abort(): void {
    this.socket.destroy();
  }

  onClose(listener: () => void): void {
    (this.closeListeners ??= []).push(listener);
  }

  /** The connection closed with this exchange unfinished. */
  peerClosed(): void {
    if (this.bodyFraming !== "none" && !this.body.readableEnded) this.body.destroy();
    this.ended();
  }

  /**
   * The status line and header block, deciding the body's framing and whether
   * the connection stays open. `length`: the body's size when it is known
   * whole (0: none), undefined when it streams.
   */
  private responseHead(status: number, headers: OutgoingHttpHeaders, length: number | undefined): string {
    this.headersSent = true;
    const noBody = this.method === "HEAD" || status === 204 || status === 304 || status < 200;
    let extra = "";
    if (noBody) this.framing = "none";
    else if (length !== undefined) {
      this.framing = length === 0 ? "none" : "length";
      if (headers["content-length"] === undefined) extra = `content-length: ${length}\r\n`;
    } else if (headers["content-length"] !== undefined) this.framing = "length";
    else if (this.head.http11) {
      this.framing = "chunked";
      extra = "transfer-encoding: chunked\r\n";
    } else this.framing = "close";
    this.keepAlive = this.framing !== "close" && this.conn.keepAliveAfter(this.head);
    if (!this.keepAlive) extra += "connection: close\r\n";
    else if (!this.head.http11) extra += "connection: keep-alive\r\n";
    return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n${fieldLines(headers)}${extra}\r\n`;
  }

  private lastChunk(trailers: IncomingHttpHeaders | undefined): void {
    if (this.framing === "chunked") this.socket.write(`${LAST_CHUNK}${trailers ? fieldLines(trailers) : ""}${CRLF}`, "latin1");
    this.ended();
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }

  private ended(): void {
    if (this.finished) return;
    this.finished = true;
    this.uncork();
    this.conn.responseEnded(this, this.keepAlive);
    const listeners = this.closeListeners;
    this.closeListeners = undefined;
    if (listeners) for (const l of listeners) l();
  }
}

/**
 * The body of a response that streams in chunked framing (or, for a response
 * that has no body, is dropped); ending it writes the last chunk and the
 * trailers after every chunk written before.
 */
class ChunkedBodyWriter extends Writable {
  trailers: IncomingHttpHeaders | undefined;
  private readonly socket: Socket;
  private readonly framed: boolean;
  private readonly done: (trailers: IncomingHttpHeaders | undefined) => void;

  constructor(options: { socket: Socket; framed: boolean; done: (trailers: IncomingHttpHeaders | undefined) => void }) {
    super();
    this.socket = options.socket;
    this.framed = options.framed;
    this.done = options.done;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (!this.framed || chunk.length === 0 || this.socket.destroyed) return callback();
    this.socket.cork();
    this.socket.write(`${chunk.length.toString(16)}${CRLF}`, "latin1");
    this.socket.write(chunk);
    // Called once the socket took it: the writer holds what the socket cannot take yet (backpressure).
    this.socket.write(CRLF, "latin1", () => callback());
    this.socket.uncork();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.done(this.trailers);
    callback();
  }
}

/** Field lines of a header block, each ending in CRLF (values were checked where they came from). */
function fieldLines(headers: OutgoingHttpHeaders | IncomingHttpHeaders): string {
  let text = "";
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) text += `${name}: ${v}\r\n`;
    else text += `${name}: ${value}\r\n`;
  }
  return text;
}
