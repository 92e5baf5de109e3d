import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import type { Duplex } from "node:stream";
import { GatewayError } from "./errors.ts";
import { H1Connection } from "./http-h1-connection.ts";
import { MuxStreamDuplex } from "./mux-stream-duplex.ts";
import type { SecretStore } from "./secret-store.ts";
import type { TunnelPool } from "./tunnel-pool.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";
import { dial, UpstreamTlsError } from "./upstream-connect.ts";

/** Idle HTTP/2 sessions per endpoint are closed after this long. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 30_000;
/**
 * Idle HTTP/1.1 keep-alive connections are not reused after this long: below
 * the shortest common server keep-alive (Node's 5 s), so the pool drops a
 * connection before the server does and seldom sends on one being closed.
 */
export const UPSTREAM_H1_IDLE_TIMEOUT_MS = 4_000;
/** How often idle connections past UPSTREAM_H1_IDLE_TIMEOUT_MS are closed (reuse checks the age itself). */
const IDLE_SWEEP_INTERVAL_MS = 1_000;
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
  /** Tunnels to peer gateways (fedgate-mux/1); undefined when the bootstrap turned them off. */
  tunnels?: TunnelPool | undefined;
}

/**
 * Pooled upstream connections for L7 requests, per cluster and endpoint:
 * idle HTTP/1.1 keep-alive connections (most recently used first), and one
 * HTTP/2 session (prior knowledge, h2c inside the mTLS link to a peer
 * gateway). Connections are made as the L4 path makes them: to a peer
 * gateway that speaks fedgate-mux/1 each is a stream of the shared tunnel
 * (so one TLS write per event-loop turn carries the requests of many pooled
 * connections), otherwise upstream-connect's `dial`. A pooled connection
 * whose tunnel goes away, or whose secrets were rotated, ends after its
 * exchange instead of carrying another.
 */
export class HttpUpstreamPool {
  private readonly idle = new Map<string, H1Connection[]>();
  private readonly keys = new WeakMap<UpstreamHost, string>();
  private readonly h1 = new Set<H1Connection>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  /** Per made session: whether it should take no new requests (see `retiring` in connect). */
  private readonly sessionRetiring = new Map<string, () => boolean>();
  private readonly options: PoolOptions;
  private sweep: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: PoolOptions) {
    this.options = options;
  }

  /** An idle HTTP/1.1 connection to the endpoint, if one is pooled. */
  idleConnection(cluster: UpstreamCluster, host: UpstreamHost): H1Connection | undefined {
    const stack = this.idle.get(this.poolKey(cluster, host));
    const oldest = Date.now() - UPSTREAM_H1_IDLE_TIMEOUT_MS;
    for (let conn = stack?.pop(); conn; conn = stack?.pop()) {
      if (!conn.idle) continue;
      if (!conn.retiring() && conn.idleSinceMs > oldest) return conn;
      conn.close();
    }
    return undefined;
  }

  /** A new HTTP/1.1 connection to the endpoint; it returns to the pool after each clean exchange. */
  async newConnection(cluster: UpstreamCluster, host: UpstreamHost): Promise<H1Connection> {
    const key = this.poolKey(cluster, host);
    const { socket, retiring } = await this.connect(cluster, host);
    const conn = new H1Connection({
      socket,
      retiring,
      release: (c) => {
        const stack = this.idle.get(key) ?? [];
        if (this.closed || stack.length >= MAX_FREE_SOCKETS) return c.destroy();
        if (c.retiring()) return c.close();
        c.idleSinceMs = Date.now();
        stack.push(c);
        this.idle.set(key, stack);
      },
    });
    this.h1.add(conn);
    this.startSweep();
    // Its tunnel goes away (the peer drains, or our secrets rotated): an idle connection on it ends now, a busy one after its exchange.
    socket.once("goaway", () => {
      if (conn.idle) conn.close();
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
    const key = this.poolKey(cluster, host);
    const existing = this.sessions.get(key);
    if (existing && !this.sessionRetiring.get(key)?.()) return existing;
    // Retiring: its streams finish, new requests go on a new session.
    if (existing) {
      this.sessionRetiring.delete(key);
      void existing.then((s) => s.close());
    }
    const made = this.connect(cluster, host).then(({ socket, retiring }) => {
      const session = h2connect(`http://${host.key}`, { createConnection: () => socket });
      const forget = () => {
        if (this.sessions.get(key) !== made) return;
        this.sessions.delete(key);
        this.sessionRetiring.delete(key);
      };
      if (this.sessions.get(key) === made) this.sessionRetiring.set(key, retiring);
      session.on("goaway", forget);
      socket.once("goaway", () => {
        forget();
        session.close();
      });
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
      if (this.sessions.get(key) !== made) return;
      this.sessions.delete(key);
      this.sessionRetiring.delete(key);
    });
    this.sessions.set(key, made);
    return made;
  }

  /** Destroys every pooled connection. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweep);
    for (const c of this.h1) c.destroy();
    this.h1.clear();
    this.idle.clear();
    for (const s of this.sessions.values()) s.then((session) => session.destroy(), () => undefined);
    this.sessions.clear();
    this.sessionRetiring.clear();
  }

  /** The endpoint's pool key, made once (not a string per request); an endpoint belongs to one cluster. */
  private poolKey(cluster: UpstreamCluster, host: UpstreamHost): string {
    let key = this.keys.get(host);
    if (key === undefined) this.keys.set(host, (key = `${cluster.spec.name}|${host.key}`));
    return key;
  }

  /** Drops pooled connections idle for UPSTREAM_H1_IDLE_TIMEOUT_MS; runs while the pool holds any. */
  private startSweep(): void {
    if (this.sweep) return;
    this.sweep = setInterval(() => {
      const oldest = Date.now() - UPSTREAM_H1_IDLE_TIMEOUT_MS;
      // Stacks hold the least recently used first.
      for (const stack of this.idle.values()) while (stack.length && stack[0]!.idleSinceMs <= oldest) stack.shift()!.destroy();
      if (this.h1.size === 0) {
        clearInterval(this.sweep);
        this.sweep = undefined;
      }
    }, IDLE_SWEEP_INTERVAL_MS);
    this.sweep.unref();
  }

  /**
   * One connection to the endpoint: a tunnel stream to a peer gateway that
   * speaks fedgate-mux/1, else a socket. `retiring` tells a pooled connection
   * to end after its exchange: its tunnel goes away, or its TLS secrets
   * changed (SDS rotation), so new exchanges use the new identity.
   */
  private async connect(cluster: UpstreamCluster, host: UpstreamHost): Promise<{ socket: Duplex; retiring: () => boolean }> {
    const { secrets, tunnels } = this.options;
    const tls = cluster.tlsFor(host);
    const context = tls && secrets.client(tls.tls);
    try {
      let socket: Duplex;
      if (tls && tunnels) {
        const link = await tunnels.connect(cluster, host, tls, secrets);
        socket = link.kind === "stream" ? new MuxStreamDuplex(link.stream) : link.socket;
      } else socket = await dial(cluster, host, secrets);
      const rotated = tls ? () => secrets.client(tls.tls) !== context : () => false;
      const retiring = socket instanceof MuxStreamDuplex ? () => socket.retiring || rotated() : rotated;
      cluster.series.connections.add();
      cluster.series.active.add(1);
      socket.once("close", () => cluster.series.active.add(-1));
      return { socket, retiring };
    } catch (err) {
      if (err instanceof UpstreamTlsError) this.options.onTlsFailure(err.reason);
      throw new UpstreamConnectError(host.key, { cause: err });
    }
  }
}
