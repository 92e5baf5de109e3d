import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import type { Socket } from "node:net";
import { Readable } from "node:stream";
import { endToEndHeaders, type BodyFraming } from "./http-downstream.ts";
import { ResponseParser, type ResponseHead } from "./http-response-parser.ts";
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

/** The response as the forwarder relays it (see http-attempt's `UpstreamResponse`). */
export interface H1Response {
  readonly status: number;
  readonly headers: OutgoingHttpHeaders;
  readonly raw: IncomingHttpHeaders;
  readonly body: Readable;
  trailers(): IncomingHttpHeaders | undefined;
  cancel(): void;
}

export interface H1Handlers {
  onResponse(response: H1Response): void;
  /** No response head came: `refused` when a reused connection closed before sending anything (the request was not processed). */
  onFailure(refused: boolean): void;
}

interface Exchange {
  readonly handlers: H1Handlers;
  readonly parser: ResponseParser;
  body: Readable | undefined;
  requestDone: boolean;
  keepAlive: boolean;
  gotBytes: boolean;
  trailers: IncomingHttpHeaders | undefined;
}

const LAST_CHUNK = "0\r\n\r\n";

/**
 * One pooled upstream HTTP/1.1 connection on a raw socket, one exchange at a
 * time. The request head and whatever body is already held go out in one
 * corked write; the response is read by the strict `ResponseParser`. Once
 * both directions ended cleanly and the server allows it, the connection is
 * handed back (`release`); anything unexpected destroys it.
 */
export class H1Connection {
  readonly socket: Socket;
  /** It carried an exchange before (a close before any answer then means the server dropped an idle connection). */
  reused = false;
  private exchange: Exchange | undefined;
  private readonly release: (conn: H1Connection) => void;

  constructor(options: { socket: Socket; release: (conn: H1Connection) => void }) {
    this.socket = options.socket;
    this.release = options.release;
    this.socket.setNoDelay(true);
    this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
    this.socket.on("close", () => this.onClose());
    // 'close' follows every error; the exchange is failed there.
    this.socket.on("error", () => undefined);
  }

  get idle(): boolean {
    return this.exchange === undefined && !this.socket.destroyed;
  }

  /** Sends the request; `handlers` hear of the response head or of a failure, exactly once. */
  send(request: H1Request, handlers: H1Handlers): void {
    const ex: Exchange = {
      handlers,
      parser: new ResponseParser({
        headRequest: request.method === "HEAD",
        onHead: (head) => this.onHead(ex, head),
        onBody: (chunk) => {
          if (ex.body && !ex.body.push(chunk)) this.socket.pause();
        },
        onEnd: (trailers) => {
          ex.trailers = trailers;
          ex.body?.push(null);
          this.maybeRelease(ex);
        },
      }),
      body: undefined,
      requestDone: request.framing === "none",
      keepAlive: false,
      gotBytes: false,
      trailers: undefined,
    };
    this.exchange = ex;
    const socket = this.socket;
    const chunked = request.framing === "chunked";
    const sink: BodySink = {
      write: (chunk) => {
        if (this.exchange !== ex || request.framing === "none" || chunk.length === 0) return true;
        if (chunked) socket.write(`${chunk.length.toString(16)}\r\n`, "latin1");
        const ok = socket.write(chunk);
        return chunked ? socket.write("\r\n", "latin1") : ok;
      },
      end: () => {
        if (this.exchange !== ex || ex.requestDone) return;
        if (chunked) socket.write(LAST_CHUNK, "latin1");
        ex.requestDone = true;
        this.maybeRelease(ex);
      },
      once: (event, listener) => socket.once(event, listener),
    };
    socket.cork();
    socket.write(requestHead(request), "latin1");
    request.body.attach(sink);
    socket.uncork();
  }

  /** Puts a connection that carried nothing yet into the pool. */
  park(): void {
    if (this.idle) this.release(this);
  }

  /** Drops the connection (the exchange was abandoned or failed). */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const ex = this.exchange;
    // Bytes nobody asked for: the connection is out of step.
    if (!ex) return this.destroy();
    ex.gotBytes = true;
    try {
      ex.parser.execute(chunk);
    } catch (err) {
      this.fail(ex, err as Error);
      return;
    }
    if (ex.parser.done && ex.parser.trailing) this.destroy();
  }

  private onHead(ex: Exchange, head: ResponseHead): void {
    ex.keepAlive = head.keepAlive;
    const body = new Readable({ read: () => this.socket.resume() });
    ex.body = body;
    ex.handlers.onResponse({
      status: head.status,
      headers: endToEndHeaders(head.headers),
      raw: head.headers,
      body,
      trailers: () => ex.trailers,
      cancel: () => {
        if (this.exchange === ex) this.destroy();
      },
    });
  }

  private maybeRelease(ex: Exchange): void {
    if (this.exchange !== ex || !ex.parser.done || !ex.requestDone) return;
    if (!ex.keepAlive || ex.parser.trailing) return this.destroy();
    this.exchange = undefined;
    this.reused = true;
    this.release(this);
  }

  private onClose(): void {
    const ex = this.exchange;
    this.exchange = undefined;
    if (!ex || ex.parser.done) return;
    try {
      ex.parser.finish();
      return;
    } catch (err) {
      this.fail(ex, err as Error);
    }
  }

  private fail(ex: Exchange, err: Error): void {
    this.exchange = undefined;
    this.destroy();
    if (ex.body) ex.body.destroy(err);
    else ex.handlers.onFailure(this.reused && !ex.gotBytes);
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
