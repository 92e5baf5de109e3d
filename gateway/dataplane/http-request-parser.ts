import type { IncomingHttpHeaders } from "node:http";
import { GatewayError } from "./errors.ts";
import { MessageParser, type SyntaxFault } from "./http-message-parser.ts";

/** Empty lines a client may send before a request line (RFC 9112 §2.2: after a body, some send an extra CRLF). */
const MAX_LEADING_EMPTY_LINES = 4;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/(\d)\.(\d)$/;
const LF = 0x0a;
const CR = 0x0d;

type RequestFault = SyntaxFault | "version" | "expectation";
const FAULT_STATUS: Readonly<Record<RequestFault, number>> = { malformed: 400, too_large: 431, unsupported: 501, version: 505, expectation: 417 };

/** The downstream's request broke HTTP/1.1 (RFC 9112): it is answered with `status` and the connection closed. */
export class DownstreamProtocolError extends GatewayError {
  /** The answer: 400, 431 (head too large), 501 (a transfer coding nothing here decodes), 505 (HTTP version), 417 (an expectation other than 100-continue). */
  readonly status: number;
  /** The `reason` label of the bad-input metric. */
  readonly reason: "malformed" | "header_overflow" | "unsupported";

  constructor(fault: RequestFault, reason: string) {
    super("FEDGATE_GATEWAY_DOWNSTREAM_PROTOCOL", `bad downstream HTTP/1.1 request: ${reason}`);
    this.status = FAULT_STATUS[fault];
    this.reason = fault === "too_large" ? "header_overflow" : fault === "malformed" ? "malformed" : "unsupported";
  }
}

export interface RequestHead {
  readonly method: string;
  /** The request-target as sent. */
  readonly target: string;
  /** HTTP/1.0 (false) or HTTP/1.1 (true). */
  readonly http11: boolean;
  /** Lower-case names; repeated fields joined with ", " (set-cookie kept as a list). */
  readonly headers: IncomingHttpHeaders;
  /** The client allows the connection to carry another request after this one. */
  readonly keepAlive: boolean;
  /** How the body is delimited: none, Content-Length, or chunked. */
  readonly framing: "none" | "length" | "chunked";
  /** The client waits for `100 Continue` before it sends the body. */
  readonly expectContinue: boolean;
}

export interface RequestParserOptions {
  /** The most the request head may take (over it: 431). */
  maxHeadBytes: number;
  onHead: (head: RequestHead) => void;
  onBody: (chunk: Buffer) => void;
  onEnd: () => void;
}

/**
 * A strict, incremental parser of the HTTP/1.1 requests on one downstream
 * connection, one at a time (the shared rules are `MessageParser`'s).
 * Framing follows RFC 9112 §6 with no leniency a smuggling attack could use:
 * Transfer-Encoding with Content-Length, Transfer-Encoding in an HTTP/1.0
 * request, `chunked` given twice or not last, differing Content-Lengths and
 * more than one Host are 400; a transfer coding other than chunked is 501,
 * an HTTP version other than 1.0 and 1.1 is 505. Request trailers are read
 * and dropped.
 */
export class RequestParser extends MessageParser {
  private readonly onHead: (head: RequestHead) => void;

  constructor(options: RequestParserOptions) {
    super({ maxHeadBytes: options.maxHeadBytes, onBody: options.onBody, onEnd: options.onEnd });
    this.onHead = options.onHead;
  }

  /** Readies the parser for the connection's next request. */
  reset(): void {
    this.restart();
  }

  protected override headStart(buf: Buffer, pos: number): number {
    for (let i = 0; i < MAX_LEADING_EMPTY_LINES && buf[pos] === CR && buf[pos + 1] === LF; i++) pos += 2;
    return pos;
  }

  /** A bare LF is refused at once, not after the head timeout (its head would never end with CRLF CRLF). */
  protected override incompleteHead(buf: Buffer, pos: number): void {
    for (let i = buf.indexOf(LF, pos); i >= 0; i = buf.indexOf(LF, i + 1)) if (i === pos || buf[i - 1] !== CR) throw this.error("malformed", "bare LF in the request head");
  }

  protected parseHead(text: string): void {
    const headers: IncomingHttpHeaders = {};
    const m = REQUEST_LINE.exec(this.fields(text, headers));
    if (!m) throw this.error("malformed", "bad request line");
    if (m[3] !== "1" || (m[4] !== "0" && m[4] !== "1")) throw this.error("version", `HTTP/${m[3]}.${m[4]} is not supported`);
    const http11 = m[4] === "1";
    const host = headers.host;
    if (host !== undefined && host.includes(",")) throw this.error("malformed", "more than one Host");
    const te = headers["transfer-encoding"];
    const cl = headers["content-length"];
    let framing: RequestHead["framing"] = "none";
    let length = 0;
    if (te !== undefined) {
      if (cl !== undefined) throw this.error("malformed", "both Transfer-Encoding and Content-Length");
      if (!http11) throw this.error("malformed", "Transfer-Encoding in an HTTP/1.0 request");
      const codings = te.toLowerCase().split(",").map((c) => c.trim());
      if (codings[codings.length - 1] !== "chunked" || codings.indexOf("chunked") !== codings.length - 1) throw this.error("malformed", "chunked is not the last transfer coding, or given twice");
      if (codings.length > 1) throw this.error("unsupported", `unsupported transfer coding ${te}`);
      framing = "chunked";
    } else if (cl !== undefined) {
      length = this.contentLength(cl);
      framing = length > 0 ? "length" : "none";
    }
    const connection = headers.connection?.toLowerCase();
    const keepAlive = http11 ? !connection?.split(",").some((t) => t.trim() === "close") : connection?.split(",").some((t) => t.trim() === "keep-alive") === true;
    const expect = headers.expect;
    if (expect !== undefined && expect.toLowerCase() !== "100-continue") throw this.error("expectation", `unsupported expectation ${expect}`);
    this.onHead({ method: m[1]!, target: m[2]!, http11, headers, keepAlive, framing, expectContinue: expect !== undefined && http11 && framing !== "none" });
    this.startBody(framing, length);
  }

  protected error(fault: RequestFault, reason: string): Error {
    return new DownstreamProtocolError(fault, reason);
  }
}
