import type { IncomingHttpHeaders } from "node:http";

/** A chunk-size line with its extensions. */
const MAX_CHUNK_LINE_BYTES = 4 * 1024;
const CRLF = Buffer.from("\r\n");
const HEAD_END = Buffer.from("\r\n\r\n");
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CHUNK_SIZE = /^([0-9a-fA-F]{1,15})[ \t]*(;[\t\x20-\x7e\x80-\xff]*)?$/;
const DIGITS = /^\d{1,15}$/;

/** What broke a message: its head or trailers are over the size limit, its syntax or framing is bad, or it uses a transfer coding nothing here decodes. */
export type SyntaxFault = "too_large" | "malformed" | "unsupported";

/** How a message body is delimited once its head is read (RFC 9112 §6.3). */
export type MessageFraming = "none" | "length" | "chunked" | "until-close";

type State = "head" | "length" | "chunk-size" | "chunk-data" | "chunk-crlf" | "trailers" | "until-close" | "done";

export interface MessageParserOptions {
  /** The most a head (or a trailer section) may take. */
  maxHeadBytes: number;
  onBody: (chunk: Buffer) => void;
  onEnd: (trailers: IncomingHttpHeaders | undefined) => void;
}

/**
 * The part of a strict, incremental HTTP/1.1 parser that requests and
 * responses share (RFC 9112): finding the head, field-line syntax and the
 * body framings (Content-Length, chunked with trailers, until close), with
 * no leniency a smuggling attack could use: bare LF line ends, obs-fold,
 * whitespace before a field's colon, control characters in values, bad or
 * conflicting Content-Length values and bad chunk sizes are errors. A subclass
 * parses the start line and decides the framing (`parseHead`), and turns a
 * fault into its own error type (`error`).
 */
export abstract class MessageParser {
  private state: State = "head";
  private pending: Buffer | undefined;
  private remaining = 0;
  private crlfSeen = 0;
  private trailerBytes = 0;
  private trailers: IncomingHttpHeaders | undefined;
  private readonly maxHeadBytes: number;
  private readonly onBody: (chunk: Buffer) => void;
  private readonly onEnd: (trailers: IncomingHttpHeaders | undefined) => void;

  constructor(options: MessageParserOptions) {
    this.maxHeadBytes = options.maxHeadBytes;
    this.onBody = options.onBody;
    this.onEnd = options.onEnd;
  }

  /** The message ended. */
  get done(): boolean {
    return this.state === "done";
  }

  /** Bytes of a head (or of a body) have arrived and the message has not ended. */
  get started(): boolean {
    return this.state !== "head" || this.pending !== undefined;
  }

  /**
   * Takes the next bytes; returns the bytes that came after the message
   * ended (undefined when there were none). Throws the subclass's error.
   */
  execute(data: Buffer): Buffer | undefined {
    const buf = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = undefined;
    let pos = 0;
    while (pos < buf.length) {
      switch (this.state) {
        case "head": {
          pos = this.headStart(buf, pos);
          if (pos >= buf.length) return undefined;
          const end = buf.indexOf(HEAD_END, pos);
          if (end < 0) {
            this.incompleteHead(buf, pos);
            this.keep(buf, pos, this.maxHeadBytes, "too_large", "head too large");
            return undefined;
          }
          if (end - pos > this.maxHeadBytes) throw this.error("too_large", "head too large");
          this.parseHead(buf.toString("latin1", pos, end));
          pos = end + HEAD_END.length;
          break;
        }
        case "length":
        case "chunk-data": {
          const n = Math.min(this.remaining, buf.length - pos);
          this.remaining -= n;
          this.onBody(buf.subarray(pos, pos + n));
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
          if (buf[pos] !== CRLF[this.crlfSeen]) throw this.error("malformed", "chunk data not followed by CRLF");
          pos += 1;
          if (++this.crlfSeen === CRLF.length) this.state = "chunk-size";
          break;
        }
        case "chunk-size": {
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) {
            this.keep(buf, pos, MAX_CHUNK_LINE_BYTES, "malformed", "chunk-size line too long");
            return undefined;
          }
          if (eol - pos > MAX_CHUNK_LINE_BYTES) throw this.error("malformed", "chunk-size line too long");
          const m = CHUNK_SIZE.exec(buf.toString("latin1", pos, eol));
          if (!m) throw this.error("malformed", "bad chunk size");
          pos = eol + CRLF.length;
          this.remaining = parseInt(m[1]!, 16);
          this.state = this.remaining === 0 ? "trailers" : "chunk-data";
          break;
        }
        case "trailers": {
          const left = this.maxHeadBytes - this.trailerBytes;
          const eol = buf.indexOf(CRLF, pos);
          if (eol < 0) {
            this.keep(buf, pos, left, "too_large", "trailer section too large");
            return undefined;
          }
          if (eol - pos + CRLF.length > left) throw this.error("too_large", "trailer section too large");
          this.trailerBytes += eol - pos + CRLF.length;
          const line = buf.toString("latin1", pos, eol);
          pos = eol + CRLF.length;
          if (line === "") this.end(this.trailers);
          else this.addField((this.trailers ??= {}), line);
          break;
        }
        case "until-close":
          this.onBody(buf.subarray(pos));
          pos = buf.length;
          break;
        case "done":
          return buf.subarray(pos);
      }
    }
    return undefined;
  }

  /** The connection closed: ends a body that runs until close, otherwise the message was cut short. */
  finish(): void {
    if (this.state === "done") return;
    if (this.state !== "until-close") throw this.error("malformed", "connection closed before the message ended");
    this.end(undefined);
  }

  /** Readies the parser for the next message on the connection. */
  protected restart(): void {
    this.state = "head";
    this.pending = undefined;
    this.remaining = 0;
    this.crlfSeen = 0;
    this.trailerBytes = 0;
    this.trailers = undefined;
  }

  /** Parses a whole head (start line and field lines, without the empty line) and calls `startBody`, unless it was an interim message. */
  protected abstract parseHead(text: string): void;

  /** The error a fault is thrown as. */
  protected abstract error(fault: SyntaxFault, reason: string): Error;

  /** Where the head starts at or after `pos` (a request parser skips empty lines before it). */
  protected headStart(_buf: Buffer, pos: number): number {
    return pos;
  }

  /** Sees the start of a head whose end has not arrived yet (a request parser refuses a bare LF early). */
  protected incompleteHead(_buf: Buffer, _pos: number): void {}

  /** Sets how the body of the message whose head was just parsed is delimited. */
  protected startBody(framing: MessageFraming, length: number): void {
    if (framing === "none" || (framing === "length" && length === 0)) this.end(undefined);
    else if (framing === "chunked") this.state = "chunk-size";
    else if (framing === "length") {
      this.state = "length";
      this.remaining = length;
    } else this.state = "until-close";
  }

  /** Splits a head into its lines and parses the field lines (all but the first) into lower-case names; returns the start line. */
  protected fields(text: string, headers: IncomingHttpHeaders): string {
    const lines = text.split("\r\n");
    for (let i = 1; i < lines.length; i++) this.addField(headers, lines[i]!);
    return lines[0]!;
  }

  /** A Content-Length field, possibly repeated or a list: every value must be the same number. */
  protected contentLength(field: string): number {
    // The usual single value, without a split and a list per message.
    if (!field.includes(",")) {
      const value = trimOws(field, 0);
      if (!DIGITS.test(value)) throw this.error("malformed", "bad or conflicting Content-Length");
      return Number(value);
    }
    const values = field.split(",").map((v) => trimOws(v, 0));
    if (!values.every((v) => DIGITS.test(v) && v === values[0])) throw this.error("malformed", "bad or conflicting Content-Length");
    return Number(values[0]);
  }

  private addField(headers: IncomingHttpHeaders, line: string): void {
    const colon = line.indexOf(":");
    if (colon <= 0) throw this.error("malformed", line.startsWith(" ") || line.startsWith("\t") ? "obsolete line folding" : "bad header line");
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw this.error("malformed", "bad header name");
    const value = trimOws(line, colon + 1);
    if (hasControl(value)) throw this.error("malformed", "control character in a header value");
    const key = name.toLowerCase();
    if (key === "set-cookie") {
      (headers["set-cookie"] ??= []).push(value);
      return;
    }
    const prior = headers[key];
    headers[key] = prior === undefined ? value : `${String(prior)}, ${value}`;
  }

  private keep(buf: Buffer, pos: number, limit: number, fault: SyntaxFault, reason: string): void {
    if (buf.length - pos > limit) throw this.error(fault, reason);
    this.pending = Buffer.from(buf.subarray(pos));
  }

  private end(trailers: IncomingHttpHeaders | undefined): void {
    this.state = "done";
    this.onEnd(trailers);
  }
}

/** `line` from `start` without the optional whitespace at either edge (a regex replace per field line cost more). */
function trimOws(line: string, start: number): string {
  let end = line.length;
  while (start < end && isOws(line.charCodeAt(start))) start++;
  while (end > start && isOws(line.charCodeAt(end - 1))) end--;
  return line.slice(start, end);
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** Control characters other than HTAB may not appear in a field value (RFC 9110 §5.5). */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}
