import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Logger } from "../../common/index.ts";
import type { GatewayMetrics } from "./metrics.ts";
import { MUX_ALPN_PING, MUX_ALPNS } from "./mux-framing.ts";
import { MuxSession, MuxStreamRefusedError, type MuxStream } from "./mux-session.ts";
import type { TlsMatchSpec } from "./resources.ts";
import type { SecretStore } from "./secret-store.ts";
import type { SocketReader } from "./socket-reads.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";

/** Concurrent streams per tunnel; the exporting side treats more as a protocol error. */
export const MUX_MAX_STREAMS = 1024;
/** A dialled tunnel with no stream for this long is closed. */
export const MUX_IDLE_TIMEOUT_MS = 60_000;
/** fedgate-mux/2: a tunnel that heard nothing for this long sends a PING. */
export const MUX_KEEPALIVE_INTERVAL_MS = 2_000;
/** ... and is declared dead when nothing arrives this long after the PING. */
export const MUX_KEEPALIVE_TIMEOUT_MS = 3_000;

/**
 * What a connection became: a stream in a tunnel to a peer gateway, or a
 * socket of its own (a peer without fedgate-mux/1, a local endpoint). A socket
 * with a `reader` delivers its reads only through it (relayStream attaches it).
 */
export type PeerLink = { kind: "stream"; stream: MuxStream } | { kind: "socket"; socket: Socket; reader?: SocketReader };

/** Opens one mTLS connection offering the given ALPN protocols (upstream-connect's `dial`). */
export type TlsDial = (cluster: UpstreamCluster, host: UpstreamHost, secrets: SecretStore, alpn: readonly string[]) => Promise<Socket>;

interface Tunnel {
  session: MuxSession;
  /** The client TLS context it was made with: a newer one (SDS rotation) retires it. */
  context: object;
  idleTimer?: NodeJS.Timeout;
  /** The endpoint each upstream cluster reached through it: each counts a failure if the tunnel dies of silence. */
  users: Map<UpstreamCluster, UpstreamHost>;
}

interface PeerEntry {
  tunnels: Tunnel[];
  /** A dial in flight that may become a tunnel; other connections wait for it instead of dialling too. */
  dialing?: Promise<unknown>;
  /** The peer answered without fedgate-mux/1: connections dial their own socket (still offering it). */
  plain: boolean;
}

export interface TunnelPoolOptions {
  metrics: GatewayMetrics;
  logger: Logger;
  dial: TlsDial;
  maxStreams?: number;
  idleTimeoutMs?: number;
  keepAlive?: { intervalMs: number; timeoutMs: number };
}

/**
 * The dialling side of fedgate-mux/1: one tunnel per (peer endpoint, local
 * identity and bundle), made on first use and re-made after it fails. A
 * stream open resolves on the peer's OPEN_ACK, i.e. once the peer's backend
 * accepted, so a refusal (no backend, unknown service, not a consumer) comes
 * back before the client's first byte is read and the caller can still try
 * the next endpoint or priority.
 */
export class TunnelPool {
  private readonly entries = new Map<string, PeerEntry>();
  private readonly options: TunnelPoolOptions;
  private readonly maxStreams: number;
  private readonly idleTimeoutMs: number;
  private closed = false;

  constructor(options: TunnelPoolOptions) {
    this.options = options;
    this.maxStreams = options.maxStreams ?? MUX_MAX_STREAMS;
    this.idleTimeoutMs = options.idleTimeoutMs ?? MUX_IDLE_TIMEOUT_MS;
  }

  /** A link to `host` for one relayed connection; rejects like a failed connect (the caller tries the next endpoint). */
  async connect(cluster: UpstreamCluster, host: UpstreamHost, tls: TlsMatchSpec, secrets: SecretStore): Promise<PeerLink> {
    const context = secrets.client(tls.tls);
    const key = `${host.key}|${tls.tls.certSecret}|${tls.tls.bundleSecret}`;
    let entry = this.entries.get(key);
    if (!entry) this.entries.set(key, (entry = { tunnels: [], plain: false }));
    // Two rounds: one tunnel made (or awaited) here may already be full or gone by the time we use it.
    for (let round = 0; round < 2; round++) {
      const tunnel = this.usable(entry, context);
      if (tunnel) return { kind: "stream", stream: await this.open(tunnel, cluster, host, tls.sni) };
      if (entry.dialing && !entry.plain) {
        await entry.dialing.then(
          () => undefined,
          () => undefined,
        );
        continue;
      }
      const dialing = this.options.dial(cluster, host, secrets, MUX_ALPNS);
      const shared = entry.plain ? undefined : dialing;
      if (shared) entry.dialing = shared;
      let socket: Socket;
      try {
        socket = await dialing;
      } finally {
        if (entry.dialing === shared) entry.dialing = undefined;
      }
      const alpn = (socket as TLSSocket).alpnProtocol;
      if (typeof alpn !== "string" || !MUX_ALPNS.includes(alpn)) {
        entry.plain = true;
        return { kind: "socket", socket };
      }
      entry.plain = false;
      if (this.closed) {
        socket.destroy();
        throw new MuxStreamRefusedError("refused");
      }
      const made = this.adopt(entry, socket, context ?? {}, host.key, alpn === MUX_ALPN_PING);
      return { kind: "stream", stream: await this.open(made, cluster, host, tls.sni) };
    }
    throw new MuxStreamRefusedError("refused");
  }

  /** Closes every tunnel and their streams. */
  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      for (const t of e.tunnels) {
        clearTimeout(t.idleTimer);
        t.session.destroy();
      }
    }
    this.entries.clear();
  }

  private usable(entry: PeerEntry, context: object | undefined): Tunnel | undefined {
    let found: Tunnel | undefined;
    for (const t of entry.tunnels) {
      // Secrets rotated: the old tunnel finishes its streams; new streams go on a tunnel with the new identity.
      if (t.context !== context) t.session.goAway();
      else if (!found && t.session.canOpen) found = t;
    }
    return found;
  }

  private open(tunnel: Tunnel, cluster: UpstreamCluster, host: UpstreamHost, service: string): Promise<MuxStream> {
    clearTimeout(tunnel.idleTimer);
    tunnel.idleTimer = undefined;
    tunnel.users.set(cluster, host);
    const timeoutMs = cluster.spec.connectTimeoutMs;
    const opening = tunnel.session.open(service);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new MuxStreamRefusedError("cancel")), timeoutMs);
    });
    return Promise.race([opening, timeout]).then(
      (stream) => {
        clearTimeout(timer);
        return stream;
      },
      (err: unknown) => {
        clearTimeout(timer);
        // A late OPEN_ACK after the timeout must not leave a stream nobody relays.
        opening.then((s) => s.reset("cancel"), () => undefined);
        if (err instanceof MuxStreamRefusedError) this.options.metrics.muxStreamRefusals.labels({ reason: err.reason }).add();
        throw err;
      },
    );
  }

  private adopt(entry: PeerEntry, socket: Socket, context: object, peer: string, pings: boolean): Tunnel {
    const { metrics, logger } = this.options;
    const active = metrics.muxActiveTunnels.labels({ side: "dialled" });
    metrics.muxTunnels.labels({ side: "dialled" }).add();
    active.add(1);
    const keepAlive = this.options.keepAlive ?? { intervalMs: MUX_KEEPALIVE_INTERVAL_MS, timeoutMs: MUX_KEEPALIVE_TIMEOUT_MS };
    const tunnel: Tunnel = {
      context,
      users: new Map(),
      session: new MuxSession({
        socket,
        role: "client",
        maxStreams: this.maxStreams,
        pings,
        keepAlive,
        // Its open streams fail and pending opens go to the next endpoint (onClose); the endpoint counts a failure.
        onKeepAliveTimeout: () => {
          metrics.muxKeepAliveTimeouts.labels().add();
          logger.warn("peer gateway silent past the keep-alive timeout: tunnel closed", { peer, streams: tunnel.session.activeStreams, ...keepAlive });
          for (const [cluster, host] of tunnel.users) cluster.reportFailure(host);
        },
        onProtocolError: (err) => {
          metrics.muxProtocolErrors.labels({ side: "dialled", reason: err.reason }).add();
          logger.warn("closed a tunnel on bad input from the peer gateway", { peer, reason: err.reason, err });
        },
        onIdle: () => {
          clearTimeout(tunnel.idleTimer);
          tunnel.idleTimer = setTimeout(() => {
            if (tunnel.session.activeStreams === 0) tunnel.session.goAway();
          }, this.idleTimeoutMs);
          tunnel.idleTimer.unref();
        },
        onClose: () => {
          clearTimeout(tunnel.idleTimer);
          active.add(-1);
          const i = entry.tunnels.indexOf(tunnel);
          if (i >= 0) entry.tunnels.splice(i, 1);
        },
      }),
    };
    entry.tunnels.push(tunnel);
    return tunnel;
  }
}
