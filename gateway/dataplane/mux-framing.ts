import { GatewayError } from "./errors.ts";

/**
 * The wire format of fedgate-mux/1: many relayed connections ("streams")
 * between two gateways over one mTLS connection, negotiated with ALPN.
 *
 * Every frame is a 9-byte header, then `length` bytes of payload:
 *
 *   type u8 | stream id u32 (big endian) | length u32 (big endian)
 *
 * | type | payload | sent by |
 * |---|---|---|
 * | OPEN | service name (the export's SNI), 1..255 bytes UTF-8 | the dialling gateway |
 * | OPEN_ACK | none: a backend accepted, data may flow | the exporting gateway |
 * | DATA | 1..MUX_MAX_FRAME_PAYLOAD_BYTES bytes | both, within the peer's window |
 * | END | none: no more data in this direction (TCP FIN) | both |
 * | RESET | one byte, a `MuxResetReason` code | both |
 * | WINDOW | u32 > 0: more bytes the sender of WINDOW will take | both |
 * | GOAWAY | none, stream id 0: no new streams on this tunnel | both |
 * | PING | 8 opaque bytes, stream id 0: answer with PONG (fedgate-mux/2 only) | both (each side's keep-alive) |
 * | PONG | the PING's 8 bytes, stream id 0 (fedgate-mux/2 only) | both, answering a PING |
 *
 * fedgate-mux/2 is fedgate-mux/1 plus PING/PONG keep-alives. The version is
 * chosen by ALPN (the dialler offers both, newest first), because a
 * fedgate-mux/1 peer treats an unknown frame type as junk and cuts the
 * tunnel: a PING must never reach a peer that did not say it knows it.
 *
 * A fixed binary header (not HTTP/2 or protobuf) keeps decoding to a few
 * `readUInt32BE` calls per frame in JS; flow control is per stream only (the
 * tunnel's own buffering is bounded by streams × window).
 */
export const MUX_ALPN = "fedgate-mux/1";
/** fedgate-mux/1 plus PING/PONG keep-alives. */
export const MUX_ALPN_PING = "fedgate-mux/2";
/** What a dialling gateway offers, newest first. */
export const MUX_ALPNS: readonly string[] = [MUX_ALPN_PING, MUX_ALPN];
export const MUX_PING_PAYLOAD_BYTES = 8;
export const MUX_HEADER_BYTES = 9;
export const MUX_MAX_FRAME_PAYLOAD_BYTES = 64 * 1024;
export const MUX_MAX_SERVICE_NAME_BYTES = 255;
/** Bytes each side may send on a stream before the receiver grants more. */
export const MUX_INITIAL_WINDOW_BYTES = 1024 * 1024;
export const MUX_MAX_WINDOW_BYTES = 2 ** 31 - 1;

export const FrameType = {
  OPEN: 1,
  OPEN_ACK: 2,
  DATA: 3,
  END: 4,
  RESET: 5,
  WINDOW: 6,
  GOAWAY: 7,
  PING: 8,
  PONG: 9,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** Why a stream was reset; the code travels in the RESET frame, the name goes into metrics and logs. */
export const MUX_RESET_REASONS = ["unknown_service", "unauthorized_cluster", "no_healthy_upstream", "refused", "cancel", "upstream_reset", "tunnel_closed"] as const;
export type MuxResetReason = (typeof MUX_RESET_REASONS)[number];

export function resetCode(reason: MuxResetReason): number {
  return MUX_RESET_REASONS.indexOf(reason) + 1;
}

export interface Frame {
  type: FrameType;
  stream: number;
  payload: Buffer;
}

/** Bad input on a tunnel: the tunnel is closed, the reason counted. */
export class MuxProtocolError extends GatewayError {
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super("FEDGATE_GATEWAY_MUX_PROTOCOL", `fedgate-mux protocol error (${reason}): ${detail}`);
  }
}

/** Writes a frame header into `buf` at `offset`; returns the offset after it. */
export function writeHeader(buf: Buffer, offset: number, type: FrameType, stream: number, length: number): number {
  buf[offset] = type;
  buf.writeUInt32BE(stream, offset + 1);
  buf.writeUInt32BE(length, offset + 5);
  return offset + MUX_HEADER_BYTES;
}

/** One whole frame in one buffer (control frames; the session writes DATA headers into its output in place). */
export function encodeFrame(type: FrameType, stream: number, payload?: Buffer): Buffer {
  const length = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(MUX_HEADER_BYTES + length);
  writeHeader(out, 0, type, stream, length);
  if (payload) payload.copy(out, MUX_HEADER_BYTES);
  return out;
}

export function encodeOpen(stream: number, service: string): Buffer {
  const name = Buffer.from(service, "utf8");
  if (name.length === 0 || name.length > MUX_MAX_SERVICE_NAME_BYTES) throw new RangeError(`service name must be 1..${MUX_MAX_SERVICE_NAME_BYTES} bytes`);
  return encodeFrame(FrameType.OPEN, stream, name);
}

export function encodeReset(stream: number, reason: MuxResetReason): Buffer {
  return encodeFrame(FrameType.RESET, stream, Buffer.of(resetCode(reason)));
}

export function encodeWindow(stream: number, credit: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(credit, 0);
  return encodeFrame(FrameType.WINDOW, stream, payload);
}

/** The reason in a RESET frame's payload (validated by the decoder). */
export function resetReason(payload: Buffer): MuxResetReason {
  return MUX_RESET_REASONS[payload[0]! - 1]!;
}

const EXPECTED_LENGTH: Record<FrameType, (n: number) => boolean> = {
  [FrameType.OPEN]: (n) => n >= 1 && n <= MUX_MAX_SERVICE_NAME_BYTES,
  [FrameType.OPEN_ACK]: (n) => n === 0,
  [FrameType.DATA]: (n) => n >= 1,
  [FrameType.END]: (n) => n === 0,
  [FrameType.RESET]: (n) => n === 1,
  [FrameType.WINDOW]: (n) => n === 4,
  [FrameType.GOAWAY]: (n) => n === 0,
  [FrameType.PING]: (n) => n === MUX_PING_PAYLOAD_BYTES,
  [FrameType.PONG]: (n) => n === MUX_PING_PAYLOAD_BYTES,
};

/** Frames about the whole tunnel, sent on stream id 0 (and only they are). */
const TUNNEL_FRAMES: ReadonlySet<number> = new Set([FrameType.GOAWAY, FrameType.PING, FrameType.PONG]);

/**
 * Splits a byte stream into frames, checking each header before its payload
 * is buffered: an unknown type, an oversized or malformed frame throws
 * MuxProtocolError at once (the payload of an oversized frame is never held).
 * A DATA frame's payload is handed on as it arrives, in pieces that share the
 * input's memory (each a DATA frame of its own): a 64 KiB frame spans four or
 * more TLS reads, and joining them cost a copy and a store-and-forward delay
 * per frame (BENCHMARKS.md, "Bulk transfer"). Only control frames, at most
 * 9 + 255 bytes, are assembled across reads.
 */
export class FrameDecoder {
  /** A header or control frame split across reads (copied: a few bytes). */
  private partial: Buffer | undefined;
  /** Payload bytes of the current DATA frame still to come, and its stream. */
  private dataLeft = 0;
  private dataStream = 0;

  /** Feeds bytes; returns every complete frame and DATA piece in them (payloads may share the input's memory). */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    this.feed(chunk, (f) => frames.push(f));
    return frames;
  }

  /**
   * Feeds bytes; hands each complete frame and DATA piece to `onFrame` as it
   * is decoded (no array per read: the session's path). `onFrame` may throw
   * to stop decoding, as a malformed frame does.
   */
  feed(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.dataLeft > 0) {
        const n = Math.min(this.dataLeft, chunk.length - offset);
        this.dataLeft -= n;
        offset += n;
        onFrame({ type: FrameType.DATA, stream: this.dataStream, payload: n === chunk.length ? chunk : chunk.subarray(offset - n, offset) });
        continue;
      }
      if (this.partial) {
        offset = this.fillPartial(chunk, offset, onFrame);
        continue;
      }
      if (chunk.length - offset < MUX_HEADER_BYTES) {
        this.partial = Buffer.from(chunk.subarray(offset));
        return;
      }
      const length = this.header(chunk, offset);
      offset += MUX_HEADER_BYTES;
      if (chunk[offset - MUX_HEADER_BYTES] === FrameType.DATA) continue;
      if (chunk.length - offset < length) {
        this.partial = Buffer.from(chunk.subarray(offset - MUX_HEADER_BYTES));
        return;
      }
      offset += length;
      onFrame(controlFrame(chunk.subarray(offset - length - MUX_HEADER_BYTES, offset)));
    }
  }

  /** Checks the header at `offset`; a DATA header starts streaming its payload. Returns the payload length. */
  private header(buf: Buffer, offset: number): number {
    const type = buf[offset]!;
    const stream = buf.readUInt32BE(offset + 1);
    const length = buf.readUInt32BE(offset + 5);
    checkHeader(type, stream, length);
    if (type === FrameType.DATA) {
      this.dataLeft = length;
      this.dataStream = stream;
    }
    return length;
  }

  /** Adds bytes from `chunk` to the split header or control frame; returns the new offset in `chunk`. */
  private fillPartial(chunk: Buffer, offset: number, onFrame: (frame: Frame) => void): number {
    const partial = this.partial!;
    const headerKnown = partial.length >= MUX_HEADER_BYTES;
    const want = (headerKnown ? MUX_HEADER_BYTES + partial.readUInt32BE(5) : MUX_HEADER_BYTES) - partial.length;
    const take = Math.min(want, chunk.length - offset);
    const joined = Buffer.concat([partial, chunk.subarray(offset, offset + take)]);
    offset += take;
    if (take < want) {
      this.partial = joined;
      return offset;
    }
    this.partial = undefined;
    if (headerKnown) {
      onFrame(controlFrame(joined));
      return offset;
    }
    const length = this.header(joined, 0);
    if (joined[0] === FrameType.DATA) return offset;
    if (length === 0) onFrame(controlFrame(joined));
    else this.partial = joined;
    return offset;
  }
}

/** A whole control frame (header already checked) in `buf`. */
function controlFrame(buf: Buffer): Frame {
  const type = buf[0]! as FrameType;
  const payload = buf.subarray(MUX_HEADER_BYTES);
  checkPayload(type, payload);
  return { type, stream: buf.readUInt32BE(1), payload };
}

function checkHeader(type: number, stream: number, length: number): void {
  const expected = EXPECTED_LENGTH[type as FrameType] as ((n: number) => boolean) | undefined;
  if (!expected) throw new MuxProtocolError("unknown_frame_type", `frame type ${type}`);
  if (length > MUX_MAX_FRAME_PAYLOAD_BYTES) throw new MuxProtocolError("frame_too_large", `${length} bytes (at most ${MUX_MAX_FRAME_PAYLOAD_BYTES})`);
  if (!expected(length)) throw new MuxProtocolError("bad_frame_length", `frame type ${type} with ${length} bytes`);
  if (TUNNEL_FRAMES.has(type) !== (stream === 0)) throw new MuxProtocolError("bad_stream_id", `frame type ${type} on stream ${stream}`);
}

function checkPayload(type: FrameType, payload: Buffer): void {
  if (type === FrameType.RESET && (payload[0]! < 1 || payload[0]! > MUX_RESET_REASONS.length)) throw new MuxProtocolError("bad_reset_code", `reset code ${payload[0]}`);
  if (type === FrameType.WINDOW) {
    const credit = payload.readUInt32BE(0);
    if (credit === 0 || credit > MUX_MAX_WINDOW_BYTES) throw new MuxProtocolError("bad_window", `window increment ${credit}`);
  }
  if (type === FrameType.OPEN && !isPrintableAscii(payload)) throw new MuxProtocolError("bad_service_name", "service name is not a DNS-like name");
}

/** SNI names are ASCII hostnames; anything else in an OPEN is junk. */
function isPrintableAscii(b: Buffer): boolean {
  for (const c of b) if (c < 0x21 || c > 0x7e) return false;
  return true;
}
