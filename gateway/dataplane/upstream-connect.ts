import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { asError } from "../../common/index.ts";
import { ClusterRevokedError } from "../../trust/index.ts";
import { GatewayError, NoHealthyUpstreamError } from "./errors.ts";
import type { SecretStore } from "./secret-store.ts";
import type { SharedReadBuffer, SocketReader } from "./socket-reads.ts";
import type { PeerLink, TunnelPool } from "./tunnel-pool.ts";
import type { UpstreamCluster, UpstreamHost } from "./upstream-cluster.ts";

export interface Upstream {
  /** A socket, or a stream in a fedgate-mux tunnel to a peer gateway. */
  readonly link: PeerLink;
  readonly host: UpstreamHost;
  readonly attempts: number;
}

/** A failed TLS origination, with the reason the metrics carry. */
export class UpstreamTlsError extends GatewayError {
  constructor(
    readonly reason: string,
    options: { cause?: unknown },
  ) {
    super("FEDGATE_GATEWAY_UPSTREAM_TLS", `TLS to the upstream failed: ${reason}`, { ...options, retryable: true });
  }
}

/**
 * Connects one downstream connection to its cluster: tries the endpoints in
 * `cluster.candidates()` order, and on a connect (or TLS) failure moves on to
 * the next endpoint or priority before giving up, so a dead endpoint costs the
 * client a little latency, not a failed connection. No downstream byte has
 * been forwarded before a connection succeeds, so retrying is always safe.
 *
 * With `tunnels`, peer gateways are reached through fedgate-mux streams; a
 * stream counts as connected on the peer's OPEN_ACK (its backend accepted),
 * so a peer that cannot serve the stream is a connect failure here too.
 *
 * With `reads`, a plain socket's reads go into that shared buffer (the link's
 * `reader`, for `relayStream`): only for a socket relayed to a tunnel stream,
 * which copies each read into its frames at once.
 */
export async function connectUpstream(options: { cluster: UpstreamCluster; secrets: SecretStore; onTlsFailure: (reason: string) => void; tunnels?: TunnelPool; reads?: SharedReadBuffer }): Promise<Upstream> {
  const { cluster } = options;
  let attempts = 0;
  let lastError: unknown;
  for (const host of cluster.candidates()) {
    attempts += 1;
    try {
      const link = await linkTo(cluster, host, options.secrets, options.tunnels, options.reads);
      cluster.reportSuccess(host);
      if (attempts > 1) cluster.series.failovers.add();
      return { link, host, attempts };
    } catch (err) {
      lastError = err;
      if (err instanceof UpstreamTlsError) options.onTlsFailure(err.reason);
      cluster.reportFailure(host);
    }
  }
  cluster.series.noHealthy.add();
  throw new NoHealthyUpstreamError(cluster.spec.name, attempts, { cause: lastError });
}

/** One connection to one endpoint: a tunnel stream when `tunnels` are on and the endpoint is a peer gateway, else a socket of its own (a plain one reading into `reads` if given). */
export async function linkTo(cluster: UpstreamCluster, host: UpstreamHost, secrets: SecretStore, tunnels?: TunnelPool, reads?: SharedReadBuffer): Promise<PeerLink> {
  const tls = cluster.tlsFor(host);
  if (tunnels && tls) return tunnels.connect(cluster, host, tls, secrets);
  const reader = tls ? undefined : reads?.reader();
  return { kind: "socket", socket: await dial(cluster, host, secrets, undefined, reader), ...(reader ? { reader } : {}) };
}

/** Opens one connection to one endpoint (TLS to peer gateways, by the cluster's transport_socket_matches); a plain one with `reader` reads through it (net's `onread`). */
export function dial(cluster: UpstreamCluster, host: UpstreamHost, secrets: SecretStore, alpn?: readonly string[], reader?: SocketReader): Promise<Socket> {
  const { host: address, port } = host.spec.address;
  const tls = cluster.tlsFor(host);
  return new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    let event: "connect" | "secureConnect" = "connect";
    if (tls) {
      const ctx = secrets.client(tls.tls);
      if (!ctx) return reject(new UpstreamTlsError("secrets_not_ready", {}));
      event = "secureConnect";
      socket = tlsConnect({
        host: address,
        port,
        servername: tls.sni || undefined,
        secureContext: ctx.context,
        checkServerIdentity: ctx.checkServerIdentity,
        rejectUnauthorized: true,
        minVersion: "TLSv1.2",
        ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
      });
    } else {
      socket = netConnect({ host: address, port, ...(reader ? { onread: reader.onread } : {}) });
    }
    const timer = setTimeout(() => fail(new GatewayError("FEDGATE_GATEWAY_CONNECT_TIMEOUT", `connect to ${host.key} timed out`, { retryable: true })), cluster.spec.connectTimeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.removeListener(event, ok);
      socket.destroy();
      if (tls && !(err instanceof GatewayError && err.code === "FEDGATE_GATEWAY_CONNECT_TIMEOUT") && !isConnectError(err)) {
        return reject(new UpstreamTlsError(tlsReason(err), { cause: err }));
      }
      reject(err);
    };
    const ok = () => {
      clearTimeout(timer);
      socket.removeListener("error", fail);
      socket.setNoDelay(true);
      resolve(socket);
    };
    socket.once(event, ok);
    socket.once("error", fail);
  });
}

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "EADDRNOTAVAIL"]);

function isConnectError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && CONNECT_ERRORS.has(code);
}

/** A stable, low-cardinality reason for a TLS failure: `revoked`, fedgate's trust codes, OpenSSL's reason, or Node's code. */
export function tlsReason(err: unknown): string {
  const e = asError(err) as Error & { code?: unknown; reason?: unknown };
  if (e instanceof ClusterRevokedError) return "revoked";
  if (typeof e.code === "string" && e.code.startsWith("FEDGATE_")) return e.code.toLowerCase();
  if (typeof e.reason === "string" && e.reason) return e.reason.toLowerCase().replace(/[^a-z0-9]+/g, "_");
  if (typeof e.code === "string") return e.code.toLowerCase();
  return "unknown";
}
