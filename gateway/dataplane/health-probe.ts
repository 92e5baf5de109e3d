import { request } from "node:http";
import { connect } from "node:net";
import type { HttpHealthCheckSpec } from "./resources.ts";
import type { PeerLink } from "./tunnel-pool.ts";

/** A status line longer than this is not HTTP: the check fails. */
const MAX_STATUS_LINE_BYTES = 1024;

export interface ProbeOptions {
  address: { host: string; port: number };
  timeoutMs: number;
  /** Absent: a TCP connect within the timeout passes. */
  http?: HttpHealthCheckSpec;
}

/**
 * One active health check of one endpoint. Resolves whether it passed, never
 * rejects: a refused connect, a timeout, a reset or an unexpected status all
 * count as a failed check.
 */
export function probe(options: ProbeOptions): Promise<boolean> {
  return options.http ? httpProbe(options, options.http) : tcpProbe(options);
}

function tcpProbe(options: ProbeOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: options.address.host, port: options.address.port });
    const finish = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(options.timeoutMs, () => finish(false));
    socket.once("connect", () => finish(true));
    socket.once("error", () => finish(false));
  });
}

/** A GET on its own connection (never pooled, so a check sees the endpoint as a new client would); the status decides. */
function httpProbe(options: ProbeOptions, http: HttpHealthCheckSpec): Promise<boolean> {
  const { host, port } = options.address;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(ok);
    };
    const req = request({ host, port, method: "GET", path: http.path, agent: false, setHost: false, headers: { host: http.host || `${host}:${port}`, "user-agent": "fedgate-health-check", connection: "close" } }, (res) => {
      res.resume();
      finish(passes(http, res.statusCode ?? 0));
    });
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    req.on("error", () => finish(false));
    req.end();
  });
}

function passes(http: HttpHealthCheckSpec, status: number): boolean {
  return http.expectedStatuses.some((r) => status >= r.start && status < r.end);
}

/**
 * An HTTP check of a service through a peer gateway: `open` gives a link
 * (a tunnel stream or an mTLS connection, as a client connection would get)
 * to the peer's export of the service; the peer relays the GET to one of its
 * local endpoints, picked by its own balancing and health checks, and the
 * status line decides. So a peer that is reachable but cannot serve the
 * service (its endpoints failing their checks, or all gone: the stream is
 * refused) fails the check, where a TCP connect to its port would pass.
 * `timeoutMs` bounds the open and the answer together.
 */
export function probeThroughPeer(options: { open: () => Promise<PeerLink>; http: HttpHealthCheckSpec; host: string; timeoutMs: number }): Promise<boolean> {
  const request = Buffer.from(`GET ${options.http.path} HTTP/1.1\r\nhost: ${options.http.host || options.host}\r\nuser-agent: fedgate-health-check\r\nconnection: close\r\n\r\n`, "latin1");
  return new Promise((resolve) => {
    let settled = false;
    let close: (() => void) | undefined;
    let head = "";
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      close?.();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const eol = head.indexOf("\r\n");
      if (eol < 0) return void (head.length > MAX_STATUS_LINE_BYTES && finish(false));
      const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(head.slice(0, eol));
      finish(status !== null && passes(options.http, Number(status[1])));
    };
    options.open().then(
      (link) => {
        if (link.kind === "socket") {
          const socket = link.socket;
          close = () => socket.destroy();
          socket.on("data", onData);
          socket.on("error", () => finish(false));
          socket.on("close", () => finish(false));
          socket.write(request);
        } else {
          const stream = link.stream;
          close = () => stream.reset("cancel");
          stream.attach({
            onData: (chunk) => {
              stream.consumed(chunk.length);
              onData(chunk);
            },
            onEnd: () => finish(false),
            onReset: () => finish(false),
            onDrain: () => undefined,
          });
          stream.write(request);
        }
        // The open outlived the timeout: drop the link now.
        if (settled) close();
      },
      () => finish(false),
    );
  });
}
