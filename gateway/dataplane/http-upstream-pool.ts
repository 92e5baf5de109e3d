import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import type { Socket } from "node:net";
import { GatewayError } from "./errors.ts";
import { H1Connection } from "./http-h1-connection.ts";
import type { SecretStore } from "./secret-store.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";
import { dial, UpstreamTlsError } from "./upstream-connect.ts";

/** Idle HTTP/2 sessions per endpoint are closed after this long. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 30_000;
/**
 * Idle HTTP/1.1 keep-alive connections are closed after this long: below the
 * shortest common server keep-alive (Node's 5 s), so the pool drops a
 * connection before the server does and seldom sends on one being closed.
 */
export const UPSTREAM_H1_IDLE_TIMEOUT_MS = 4_000;
/** Idle HTTP/1.1 connections kept per endpoint. */
const MAX_FREE_SOCKETS = 64;

/** No connection to the endpoint could be made: the request never left, so it can always go elsewhere. */
export class UpstreamConnectError extends GatewayError {
  constructor(endpoint: string, options: { cause?: unknown }) {
    super("FEDGATE_GATEWAY_UPSTREAM_CONNECT", `cannot connect to ${endpoint}`, { ...options, retryable: true });
  }
}

interface PoolOptions {
  secrets: SecretStore;
  onTlsFailure: (reason: string) => void;
}

/**
 * Pooled upstream connections for L7 requests, per cluster and endpoint:
 * idle HTTP/1.1 keep-alive connections (most recently used first), and one
 * HTTP/2 session (prior knowledge, h2c
 * inside the mTLS tunnel to a peer gateway). Connections are made by
 * upstream-connect's `dial`, so TLS origination and SNI are the L4 path's.
 */
export class HttpUpstreamPool {
  private readonly idle = new Map<string, H1Connection[]>();
  private readonly h1 = new Set<H1Connection>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private readonly options: PoolOptions;
  private closed = false;

  constructor(options: PoolOptions) {
    this.options = options;
  }

  /** An idle HTTP/1.1 connection to the endpoint, if one is pooled. */
  idleConnection(cluster: UpstreamCluster, host: UpstreamHost): H1Connection | undefined {
    const stack = this.idle.get(poolKey(cluster, host));
    for (let conn = stack?.pop(); conn; conn = stack?.pop()) if (conn.idle) return conn;
    return undefined;
  }

  /** A new HTTP/1.1 connection to the endpoint; it returns to the pool after each clean exchange. */
  async newConnection(cluster: UpstreamCluster, host: UpstreamHost): Promise<H1Connection> {
    const key = poolKey(cluster, host);
    const socket = await this.connect(cluster, host);
    const conn = new H1Connection({
      socket,
      release: (c) => {
        const stack = this.idle.get(key) ?? [];
        if (this.closed || stack.length >= MAX_FREE_SOCKETS) return c.destroy();
        stack.push(c);
        this.idle.set(key, stack);
      },
    });
    this.h1.add(conn);
    socket.setTimeout(UPSTREAM_H1_IDLE_TIMEOUT_MS, () => {
      if (conn.idle) conn.destroy();
    });
    socket.once("close", () => {
      this.h1.delete(conn);
      const stack = this.idle.get(key);
      const i = stack?.indexOf(conn) ?? -1;
      if (stack && i >= 0) stack.splice(i, 1);
    });
    if (this.closed) conn.destroy();
    return conn;
  }

  /** The endpoint's HTTP/2 session, made on first use and replaced once it closes or goes away. */
  session(cluster: UpstreamCluster, host: UpstreamHost): Promise<ClientHttp2Session> {
    const key = poolKey(cluster, host);
    const existing = this.sessions.get(key);
    if (existing) return existing;
    const made = this.connect(cluster, host).then((socket) => {
      const session = h2connect(`http://${host.key}`, { createConnection: () => socket });
      const forget = () => {
        if (this.sessions.get(key) === made) this.sessions.delete(key);
      };
      session.on("goaway", forget);
      session.on("close", forget);
      session.on("error", forget);
      session.setTimeout(UPSTREAM_IDLE_TIMEOUT_MS, () => {
        forget();
        session.close();
      });
      if (this.closed) session.destroy();
      return session;
    });
    made.catch(() => {
      if (this.sessions.get(key) === made) this.sessions.delete(key);
    });
    this.sessions.set(key, made);
    return made;
  }

  /** Destroys every pooled connection. */
  close(): void {
    this.closed = true;
    for (const c of this.h1) c.destroy();
    this.h1.clear();
    this.idle.clear();
    for (const s of this.sessions.values()) s.then((session) => session.destroy(), () => undefined);
    this.sessions.clear();
  }

  private async connect(cluster: UpstreamCluster, host: UpstreamHost): Promise<Socket> {
    try {
      const socket = await dial(cluster, host, this.options.secrets);
      cluster.series.connections.add();
      cluster.series.active.add(1);
      socket.once("close", () => cluster.series.active.add(-1));
      return socket;
    } catch (err) {
      if (err instanceof UpstreamTlsError) this.options.onTlsFailure(err.reason);
      throw new UpstreamConnectError(host.key, { cause: err });
    }
  }
}

function poolKey(cluster: UpstreamCluster, host: UpstreamHost): string {
  return `${cluster.spec.name}|${host.key}`;
}
