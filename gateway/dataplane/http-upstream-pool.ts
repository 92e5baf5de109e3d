import { Agent } from "node:http";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import type { Socket } from "node:net";
import { GatewayError } from "./errors.ts";
import type { SecretStore } from "./secret-store.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";
import { dial, UpstreamTlsError } from "./upstream-connect.ts";

/** Idle keep-alive connections per endpoint are closed after this long. */
export const UPSTREAM_IDLE_TIMEOUT_MS = 30_000;
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
 * an HTTP/1.1 keep-alive agent, and one HTTP/2 session (prior knowledge, h2c
 * inside the mTLS tunnel to a peer gateway). Connections are made by
 * upstream-connect's `dial`, so TLS origination and SNI are the L4 path's.
 */
export class HttpUpstreamPool {
  private readonly agents = new Map<string, Agent>();
  private readonly sessions = new Map<string, Promise<ClientHttp2Session>>();
  private readonly options: PoolOptions;
  private closed = false;

  constructor(options: PoolOptions) {
    this.options = options;
  }

  /** The keep-alive agent for one endpoint; its new connections go through `dial`. */
  agent(cluster: UpstreamCluster, host: UpstreamHost): Agent {
    const key = poolKey(cluster, host);
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new Agent({ keepAlive: true, maxFreeSockets: MAX_FREE_SOCKETS, timeout: UPSTREAM_IDLE_TIMEOUT_MS, scheduling: "lifo" });
      agent.createConnection = ((_opts: unknown, callback: (err: Error | null, socket?: Socket) => void) => {
        this.connect(cluster, host).then(
          (socket) => callback(null, socket),
          (err: Error) => callback(err),
        );
        return undefined;
      }) as unknown as Agent["createConnection"];
      this.agents.set(key, agent);
    }
    return agent;
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
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
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
