import type { IncomingHttpHeaders } from "node:http";
import { GatewayError } from "./errors.ts";
import { MessageParser, type SyntaxFault } from "./http-message-parser.ts";

/** The most an upstream response head (or its trailer section) may take, as Node's own client allows. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;

/**
 * An upstream's HTTP/1.1 response broke the message syntax or its framing
 * (RFC 9112): the connection is dropped and never reused, the response is
 * not passed on as if it were whole.
 */
export class UpstreamProtocolError extends GatewayError {
  constructor(reason: string) {
    super("FEDGATE_GATEWAY_UPSTREAM_PROTOCOL", `bad upstream HTTP/1.1 response: ${reason}`);
  }
}

export interface ResponseHead {
  readonly status: number;
  /** Lower-case names; repeated fields joined with ", " (set-cookie kept as a list). */
  readonly headers: IncomingHttpHeaders;
  /** The connection may carry another request once this response ends. */
  readonly keepAlive: boolean;
}

export interface ResponseParserOptions {
  onHead: (head: ResponseHead) => void;
  onBody: (chunk: Buffer) => void;
  onEnd: (trailers: IncomingHttpHeaders | undefined) => void;
}

/**
 * A strict, incremental parser of one HTTP/1.1 response (the shared rules are
 * `MessageParser`'s). Both Transfer-Encoding and Content-Length, or a
 * transfer coding other than `chunked`, are errors. 1xx interim responses
 * are skipped (101 is an error: nothing here upgrades). Without
 * Content-Length or chunked framing, the body runs until the connection
 * closes.
 */
export class ResponseParser extends MessageParser {
  private extraBytes = 0;
  private headRequest = false;
  private readonly onHead: (head: ResponseHead) => void;

  constructor(options: ResponseParserOptions) {
    super({ maxHeadBytes: MAX_RESPONSE_HEAD_BYTES, onBody: options.onBody, onEnd: options.onEnd });
    this.onHead = options.onHead;
  }

  /** Readies the parser for the response to the next request; `headRequest`: that request is HEAD (no body whatever the framing says). */
  reset(headRequest: boolean): void {
    this.restart();
    this.extraBytes = 0;
    this.headRequest = headRequest;
  }

  /** Bytes came after the response ended (nothing asked for them): the connection cannot be reused. */
  get trailing(): boolean {
    return this.extraBytes > 0;
  }

  /** Takes the next bytes from the connection; throws `UpstreamProtocolError`. */
  override execute(data: Buffer): undefined {
    const rest = super.execute(data);
    if (rest) this.extraBytes += rest.length;
    return undefined;
  }

  protected parseHead(text: string): void {
    const headers: IncomingHttpHeaders = {};
    const m = STATUS_LINE.exec(this.fields(text, headers));
    if (!m) throw this.error("malformed", "bad status line");
    const status = Number(m[2]);
    if (status === 101) throw this.error("unsupported", "protocol switch (101) is not supported");
    // Interim answers carry no body; the final response follows.
    if (status < 200) return;
    const te = headers["transfer-encoding"];
    const cl = headers["content-length"];
    if (te !== undefined && cl !== undefined) throw this.error("malformed", "both Transfer-Encoding and Content-Length");
    if (te !== undefined && te.toLowerCase() !== "chunked") throw this.error("unsupported", `unsupported transfer coding ${te}`);
    const length = cl === undefined ? undefined : this.contentLength(cl);
    const close = m[1] === "0" || (headers.connection ?? "").toLowerCase().split(",").some((t) => t.trim() === "close");
    const noBody = this.headRequest || status === 204 || status === 304;
    const untilClose = !noBody && te === undefined && length === undefined;
    this.onHead({ status, headers, keepAlive: !close && !untilClose });
    this.startBody(noBody ? "none" : te !== undefined ? "chunked" : length !== undefined ? "length" : "until-close", length ?? 0);
  }

  protected error(_fault: SyntaxFault, reason: string): Error {
    return new UpstreamProtocolError(reason);
  }
}
