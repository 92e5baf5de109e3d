import type { IncomingHttpHeaders } from "node:http";
import { GatewayError } from "./errors.ts";

/** The most an upstream response head (or its trailer section) may take, as Node's own client allows. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024;
/** A chunk-size line with its extensions. */
const MAX_CHUNK_LINE_BYTES = 4 * 1024;
const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const OWS_EDGES = /^[ \t]+|[ \t]+$/g;
const CHUNK_SIZE = /^([0-9a-fA-F]{1,15})[ \t]*(;[\t\x20-\x7e\x80-\xff]*)?$/;
const DIGITS = /^\d{1,15}$/;

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
  onHead(head: ResponseHead): void;
  onBody(chunk: Buffer): void;
  onEnd(trailers: IncomingHttpHeaders | undefined): void;
}

type State = "head" | "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailers" | "until-close" | "done";

/**
 * A strict, incremental parser of one HTTP/1.1 response. Framing follows
 * RFC 9112 §6.3 with no leniency a smuggling attack could use: both
 * Transfer-Encoding and Content-Length, differing Content-Length values, a
 * transfer coding other than `chunked`, bare LF line ends, obs-fold,
 * whitespace before a field's colon, control characters in values and bad
 * chunk sizes are errors. 1xx interim responses are skipped (101 is an error:
 * nothing here upgrades). Without Content-Length or chunked framing, the body
 * runs until the connection closes.
 */
export class ResponseParser {
  private state: State = "head";
  private pending: Buffer | undefined;
  private remaining = 0;
  private crlfSeen = 0;
  private trailerBytes = 0;
  private trailers: IncomingHttpHeaders | undefined;
  private extraBytes = 0;
  private headRequest = false;
  private readonly options: ResponseParserOptions;

  constructor(options: ResponseParserOptions) {
    this.options = options;
  }

  /** Readies the parser for the response to the next request; `headRequest`: that request is HEAD (no body whatever the framing says). */
  reset(headRequest: boolean): void {
    this.state = "head";
    this.pending = undefined;
    this.remaining = 0;
    this.crlfSeen = 0;
    this.trailerBytes = 0;
    this.trailers = undefined;
    this.extraBytes = 0;
    this.headRequest = headRequest;
  }

  /** The response ended. */
  get done(): boolean {
    return this.state === "done";
  }

  /** Bytes came after the response ended (nothing asked for them): the connection cannot be reused. */
  get trailing(): boolean {
    return this.extraBytes > 0;
  }

  /** Takes the next bytes from the connection; throws `UpstreamProtocolError`. */
  execute(data: Buffer): void {
    const buf = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = undefined;
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case "head": {
          const end = buf.indexOf(HEAD_END, pos);
          if (end < 0) return this.keep(buf, pos, MAX_RESPONSE_HEAD_BYTES, "response head too large");
          if (end - pos > MAX_RESPONSE_HEAD_BYTES) throw new UpstreamProtocolError("response head too large");
          this.head(buf.toString("latin1", pos, end));
          pos = end + HEAD_END.length;
          break;
        }
        case "length":
        case "chunk-data": {
          const n = Math.min(this.remaining, buf.length - pos);
          this.remaining -= n;
          this.options.onBody(buf.subarray(pos, pos + n));
          pos += n;
          if (this.remaining > 0) break;
          if (this.state === "length") this.end(undefined);
          else {
            this.state = "chunk-crlf";
            this.crlfSeen = 0;
          }
          break;
        }
        case "chunk-crlf": {
          if (buf[pos] !== CRLF[this.crlfSeen]) throw new UpstreamProtocolError("chunk data not followed by CRLF");
          pos += 1;
          if (++this.crlfSeen === CRLF.length) this.state = "chunk-size";
          break;
        }
        case "chunk-size": {
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) return this.keep(buf, pos, MAX_CHUNK_LINE_BYTES, "chunk-size line too long");
          if (eol - pos > MAX_CHUNK_LINE_BYTES) throw new UpstreamProtocolError("chunk-size line too long");
          const m = CHUNK_SIZE.exec(buf.toString("latin1", pos, eol));
          if (!m) throw new UpstreamProtocolError("bad chunk size");
          pos = eol + CRLF.length;
          this.remaining = parseInt(m[1]!, 16);
          this.state = this.remaining === 0 ? "trailers" : "chunk-data";
          break;
        }
        case "trailers": {
          const left = MAX_RESPONSE_HEAD_BYTES - this.trailerBytes;
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) return this.keep(buf, pos, left, "trailer section too large");
          if (eol - pos + CRLF.length > left) throw new UpstreamProtocolError("trailer section too large");
          this.trailerBytes += eol - pos + CRLF.length;
          const line = buf.toString("latin1", pos, eol);
          pos = eol + CRLF.length;
          if (line === "") this.end(this.trailers);
          else addField((this.trailers ??= {}), line);
          break;
        }
        case "until-close":
          this.options.onBody(buf.subarray(pos));
          pos = buf.length;
          break;
        case "done":
          this.extraBytes += buf.length - pos;
          return;
      }
    }
  }

  /** The connection closed: ends a body that runs until close, otherwise the response was cut short. */
  finish(): void {
    if (this.state === "done") return;
    if (this.state !== "until-close") throw new UpstreamProtocolError("connection closed before the response ended");
    this.end(undefined);
  }

  private keep(buf: Buffer, pos: number, limit: number, tooLarge: string): void {
    if (buf.length - pos > limit) throw new UpstreamProtocolError(tooLarge);
    this.pending = Buffer.from(buf.subarray(pos));
  }

  private head(text: string): void {
    const lines = text.split("\r\n");
    const m = STATUS_LINE.exec(lines[0]!);
    if (!m) throw new UpstreamProtocolError("bad status line");
    const status = Number(m[2]);
    const headers: IncomingHttpHeaders = {};
    for (let i = 1; i < lines.length; i++) addField(headers, lines[i]!);
    if (status === 101) throw new UpstreamProtocolError("protocol switch (101) is not supported");
    // Interim answers carry no body; the final response follows.
    if (status < 200) return;
    const te = headers["transfer-encoding"];
    const cl = headers["content-length"];
    if (te !== undefined && cl !== undefined) throw new UpstreamProtocolError("both Transfer-Encoding and Content-Length");
    if (te !== undefined && te.toLowerCase() !== "chunked") throw new UpstreamProtocolError(`unsupported transfer coding ${te}`);
    const length = cl === undefined ? undefined : contentLength(cl);
    const close = m[1] === "0" || (headers.connection ?? "").toLowerCase().split(",").some((t) => t.trim() === "close");
    const noBody = this.headRequest || status === 204 || status === 304;
    const untilClose = !noBody && te === undefined && length === undefined;
    this.options.onHead({ status, headers, keepAlive: !close && !untilClose });
    if (noBody || length === 0) this.end(undefined);
    else if (te !== undefined) this.state = "chunk-size";
    else if (length !== undefined) {
      this.state = "length";
      this.remaining = length;
    } else this.state = "until-close";
  }

  private end(trailers: IncomingHttpHeaders | undefined): void {
    this.state = "done";
    this.options.onEnd(trailers);
  }
}

function addField(headers: IncomingHttpHeaders, line: string): void {
  const colon = line.indexOf(":");
  if (colon <= 0) throw new UpstreamProtocolError(line.startsWith(" ") || line.startsWith("\t") ? "obsolete line folding" : "bad header line");
  const name = line.slice(0, colon);
  if (!TOKEN.test(name)) throw new UpstreamProtocolError("bad header name");
  const value = line.slice(colon + 1).replace(OWS_EDGES, "");
  if (hasControl(value)) throw new UpstreamProtocolError("control character in a header value");
  const key = name.toLowerCase();
  if (key === "set-cookie") {
    (headers["set-cookie"] ??= []).push(value);
    return;
  }
  const prior = headers[key];
  headers[key] = prior === undefined ? value : `${String(prior)}, ${value}`;
}

/** A Content-Length field, possibly repeated or a list: every value must be the same number. */
function contentLength(field: string): number {
  const values = field.split(",").map((v) => v.replace(OWS_EDGES, ""));
  if (!values.every((v) => DIGITS.test(v) && v === values[0])) throw new UpstreamProtocolError("bad or conflicting Content-Length");
  return Number(values[0]);
}

/** Control characters other than HTAB may not appear in a field value (RFC 9110 §5.5). */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}
