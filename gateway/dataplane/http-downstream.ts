import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { constants, type IncomingHttpHeaders as H2Headers, type ServerHttp2Stream } from "node:http2";
import type { Readable, Writable } from "node:stream";

/** Headers that describe one hop's connection; never forwarded (RFC 9110 §7.6.1, RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "host", "http2-settings", "trailer"]);

/** How a request body is delimited: not at all (no body), by Content-Length, or as chunks of unknown total. */
export type BodyFraming = "none" | "length" | "chunked";

const COLON = 0x3a;

/** One downstream request, HTTP/1.1 or HTTP/2, as the forwarder sees it. */
export interface Downstream {
  readonly protocol: "h1" | "h2";
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** End-to-end request headers: lower-case, no pseudo-headers, no hop-by-hop ones (`te: trailers` kept). */
  readonly headers: OutgoingHttpHeaders;
  readonly body: Readable;
  /** How the body is delimited, and so how it is framed on an HTTP/1.1 upstream connection. */
  readonly bodyFraming: BodyFraming;
  /** A gRPC call (`content-type: application/grpc…`): errors are answered as gRPC statuses. */
  readonly grpc: boolean;
  readonly headersSent: boolean;
  readonly closed: boolean;
  /** Sends the status and headers; returns where the body goes, or nothing when `endStream`. */
  respond(status: number, headers: OutgoingHttpHeaders, endStream: boolean): Writable | undefined;
  /** Sends a response whose body is all there, with no trailers (on HTTP/1.1: one write, framed by its length). */
  respondWhole(status: number, headers: OutgoingHttpHeaders, body: Buffer): void;
  /** Ends the response, with a last piece of body and trailers when there are any. */
  end(trailers: IncomingHttpHeaders | undefined, last?: Buffer): void;
  /** Cuts the response (reset stream / closed connection): the client sees a failure, not a short answer. */
  abort(): void;
  onClose(listener: () => void): void;
}

/** End-to-end headers of a message: hop-by-hop, pseudo-headers and those the `connection` header names dropped. */
export function endToEndHeaders(headers: IncomingHttpHeaders | H2Headers): OutgoingHttpHeaders {
  // Per request, twice: no Set unless the connection header names fields (rare).
  const connection = headers.connection;
  const named = connection ? new Set(String(connection).toLowerCase().split(",").map((s) => s.trim()).filter(Boolean)) : undefined;
  const out: OutgoingHttpHeaders = {};
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined || k.charCodeAt(0) === COLON || HOP_BY_HOP.has(k) || named?.has(k)) continue;
    out[k] = v;
  }
  const te = headers.te;
  if (typeof te === "string" && te.toLowerCase().includes("trailers")) out.te = "trailers";
  return out;
}

/** A gRPC call: its errors are answered as gRPC statuses. */
export function isGrpc(headers: IncomingHttpHeaders | H2Headers): boolean {
  return String(headers["content-type"] ?? "").startsWith("application/grpc");
}

export function h2Downstream(stream: ServerHttp2Stream, headers: H2Headers): Downstream {
  let trailers: IncomingHttpHeaders | undefined;
  const grpc = isGrpc(headers);
  stream.on("wantTrailers", () => {
    if (trailers && Object.keys(trailers).length) stream.sendTrailers(endToEndHeaders(trailers));
    else stream.close(constants.NGHTTP2_NO_ERROR);
  });
  return {
    protocol: "h2",
    method: String(headers[":method"] ?? ""),
    path: String(headers[":path"] ?? ""),
    authority: String(headers[":authority"] ?? headers.host ?? ""),
    headers: endToEndHeaders(headers),
    body: stream,
    // An h2 body is delimited by END_STREAM: only a content-length tells its size up front.
    bodyFraming: headers["content-length"] !== undefined ? "length" : stream.readableEnded ? "none" : "chunked",
    grpc,
    get headersSent() {
      return stream.headersSent;
    },
    get closed() {
      return stream.closed || stream.destroyed;
    },
    respond(status, headers, endStream) {
      // Trailers (gRPC's status) are only waited for on gRPC answers; other h2 answers end with their body.
      const waitForTrailers = !endStream && String(headers["content-type"] ?? "").startsWith("application/grpc");
      stream.respond({ ...headers, ":status": status }, { endStream, waitForTrailers });
      return endStream ? undefined : stream;
    },
    respondWhole(status, headers, body) {
      stream.respond({ ...headers, ":status": status }, { endStream: false, waitForTrailers: String(headers["content-type"] ?? "").startsWith("application/grpc") });
      stream.end(body);
    },
    end(t, last) {
      trailers = t;
      stream.end(last);
    },
    abort() {
      stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    },
    onClose(listener) {
      stream.once("close", listener);
    },
  };
}
