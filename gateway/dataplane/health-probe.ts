import { request } from "node:http";
import { connect } from "node:net";
import type { HttpHealthCheckSpec } from "./resources.ts";

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
      const status = res.statusCode ?? 0;
      res.resume();
      finish(http.expectedStatuses.some((r) => status >= r.start && status < r.end));
    });
    const timer = setTimeout(() => finish(false), options.timeoutMs);
    req.on("error", () => finish(false));
    req.end();
  });
}
