import type { Socket } from "node:net";
import { createServer, type SecureContext, type Server, type TLSSocket } from "node:tls";
import { asError } from "../../common/index.ts";
import { admitTlsPeer, type PeerIdentity, type TrustBundle } from "../../trust/index.ts";
import { GatewayError } from "./errors.ts";
import { boundPort, listen } from "./import-listener.ts";
import type { ListenerContext } from "./listener-context.ts";
import type { ExportChainSpec, ExportListenerSpec } from "./resources.ts";
import { MUX_ALPNS, MUX_ALPN_PING } from "./mux-framing.ts";
import { MuxSession, type MuxKeepAlive, type MuxStream } from "./mux-session.ts";
import { relay, relayStream } from "./relay.ts";
import { SharedReadBuffer } from "./socket-reads.ts";
import { MUX_MAX_STREAMS } from "./tunnel-pool.ts";
import { connectUpstream, tlsReason } from "./upstream-connect.ts";

/** The SNI named no exported service; refused during the handshake, before any certificate is sent. */
class UnknownSniError extends GatewayError {
  constructor(sni: string) {
    super("FEDGATE_GATEWAY_UNKNOWN_SNI", `no export for SNI ${JSON.stringify(sni.slice(0, 255))}`);
  }
}

/**
 * The newest fedgate-mux version the peer offers (MUX_ALPNS). Otherwise Node has no "select
 * nothing" (undefined is a fatal alert, as is a list with no overlap), so the
 * relay confirms what the client would speak anyway: `http/1.1` if offered
 * (what a client falls back to without ALPN, as before tunnels), else its
 * first choice (a client offering only `h2`, like gRPC, speaks h2 regardless).
 */
export function selectAlpn(protocols: readonly string[]): string | undefined {
  const mux = MUX_ALPNS.find((p) => protocols.includes(p));
  if (mux) return mux;
  return protocols.includes("http/1.1") ? "http/1.1" : protocols[0];
}

/** An accepted fedgate-mux tunnel: who the peer is, checked per stream. */
interface TunnelPeer {
  socket: TLSSocket;
  identity: PeerIdentity;
  bundleSecret: string;
  /** The bundle the peer's chain was last verified against; a newer bundle re-verifies it. */
  bundle: TrustBundle;
}

/**
 * The export listener (15443): mTLS terminated per SNI. Only SNIs of exported
 * services get a certificate; the client's chain is verified by trust/
 * (`admitTlsPeer`, against the current bundle) before a byte is read, then its
 * cluster is checked against the export's consumers, then the connection is
 * balanced over the export's local endpoints.
 *
 * Revocation: a client whose cluster is on a root's revocation list (carried
 * in the bundle secret) is refused at its handshake (`reason="revoked"`).
 * Unlike Envoy, which checks only new handshakes, connections admitted before
 * the list arrived are cut when it is installed (`enforceRevocations`): a
 * revoked cluster is one whose key may be in an attacker's hands, and a
 * long-lived connection would otherwise outlive the revocation indefinitely.
 *
 * fedgate-mux/1 (ALPN): a peer gateway may carry many connections over one
 * admitted mTLS connection. Each stream names its service in its OPEN frame
 * and gets the checks a connection gets: an exported service (else reset and
 * counted as `unknown_sni`), the tunnel's peer cluster among its consumers
 * (`unauthorized_cluster`), and the peer's chain verified against the current
 * bundle. A revocation cuts the whole tunnel; `close()` sends GOAWAY.
 */
export class ExportListener {
  spec: ExportListenerSpec;
  private chains = new Map<string, ExportChainSpec>();
  /** Admitted connections and who they are, so a later revocation can cut them. */
  private readonly admitted = new Map<TLSSocket, { identity: PeerIdentity; bundleSecret: string }>();
  private readonly server: Server;
  private readonly ctx: ListenerContext;
  private readonly tunnels = new Set<MuxSession>();
  private readonly keepAlive: MuxKeepAlive | undefined;
  /** What the backend sockets of tunnel streams read into (each read is copied into the tunnel's frames at once). */
  private readonly reads = new SharedReadBuffer();

  private constructor(spec: ExportListenerSpec, server: Server, ctx: ListenerContext, keepAlive: MuxKeepAlive | undefined) {
    this.spec = spec;
    this.server = server;
    this.ctx = ctx;
    this.keepAlive = keepAlive;
    this.update(spec);
  }

  /** `keepAlive`: PING a fedgate-mux/2 tunnel that has been silent that long, close it when no answer comes (none: only answer PINGs). */
  static async start(options: { spec: ExportListenerSpec; host: string; port: number; ctx: ListenerContext; keepAlive?: MuxKeepAlive }): Promise<ExportListener> {
    const holder: { listener?: ExportListener } = {};
    const server = createServer({
      // fedgate's verifier (trust/) decides, after the handshake, with typed reasons; OpenSSL only asks for the certificate.
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
      noDelay: true,
      // Peers that offer no ALPN, or other protocols, get the per-connection SNI relay (see selectAlpn).
      ALPNCallback: ({ protocols }) => selectAlpn(protocols),
      handshakeTimeout: options.ctx.handshakeTimeoutMs,
      SNICallback: (servername, cb) => {
        const result = holder.listener?.contextFor(servername) ?? new GatewayError("FEDGATE_GATEWAY_STARTING", "listener starting");
        if (result instanceof Error) cb(result, undefined);
        else cb(null, result);
      },
    });
    const listener = new ExportListener(options.spec, server, options.ctx, options.keepAlive);
    holder.listener = listener;
    server.on("connection", (raw: Socket) => listener.onRaw(raw));
    server.on("secureConnection", (socket: TLSSocket) => listener.onSecure(socket));
    server.on("tlsClientError", (err: Error, socket: TLSSocket) => {
      // Node leaves the socket open after a handshake timeout; cut every failed handshake here.
      socket.destroy();
      listener.onClientError(err);
    });
    await listen(server, options.host, options.port, options.spec.name);
    return listener;
  }

  get port(): number {
    return boundPort(this.server);
  }

  update(spec: ExportListenerSpec): void {
    this.spec = spec;
    this.chains = new Map(spec.chains.map((c) => [c.sni, c]));
  }

  /** Stops accepting; tunnels get GOAWAY (their open streams carry on, new ones go elsewhere). */
  close(): void {
    this.server.close();
    for (const t of this.tunnels) t.goAway();
  }

  /** Cuts admitted connections whose cluster the current revocation lists name; returns how many. */
  enforceRevocations(): number {
    let cut = 0;
    for (const [socket, { identity, bundleSecret }] of this.admitted) {
      if (!this.ctx.secrets.revocations(bundleSecret).isRevoked(identity.intermediate, identity.root)) continue;
      this.admitted.delete(socket);
      socket.destroy();
      cut += 1;
      this.ctx.metrics.downstreamRefused.labels({ listener: this.spec.name, reason: "revoked" }).add();
      this.ctx.logger.warn("cut a connection of a revoked cluster", { listener: this.spec.name, reason: "revoked", caller: identity.cluster, spiffeId: identity.spiffeId });
    }
    return cut;
  }

  private contextFor(servername: string): SecureContext | Error {
    const chain = this.chains.get(servername);
    if (!chain) {
      this.refuse("unknown_sni", { sni: servername.slice(0, 255) });
      return new UnknownSniError(servername);
    }
    const context = this.ctx.secrets.server(chain.tls);
    if (!context) {
      this.refuse("secrets_not_ready", { sni: servername });
      return new GatewayError("FEDGATE_GATEWAY_SECRETS_NOT_READY", "SDS secrets have not arrived", { retryable: true });
    }
    return context;
  }

  private refuse(reason: string, fields: Record<string, unknown>): void {
    this.ctx.metrics.tlsFailures.labels({ side: "downstream", reason }).add();
    this.ctx.logger.warn("refused a TLS client", { listener: this.spec.name, reason, ...fields });
  }

  private onRaw(raw: Socket): void {
    const name = this.spec.name;
    this.ctx.connections.add(raw, { total: this.ctx.metrics.downstreamConnections.labels({ listener: name }), active: this.ctx.metrics.downstreamActive.labels({ listener: name }) });
  }

  private onClientError(err: Error): void {
    // Refusals decided in SNICallback are already counted.
    if (err instanceof GatewayError) return;
    const code = (err as { code?: unknown }).code;
    const reason = code === "ERR_TLS_HANDSHAKE_TIMEOUT" ? "handshake_timeout" : code === "ECONNRESET" ? "client_disconnected" : tlsReason(err);
    this.refuse(reason, { err: asError(err) });
  }

  private onSecure(socket: TLSSocket): void {
    socket.on("error", () => socket.destroy());
    const servername = typeof socket.servername === "string" ? socket.servername : "";
    const chain = this.chains.get(servername);
    const bundle = chain && this.ctx.secrets.bundle(chain.tls.bundleSecret);
    if (!chain || !bundle) {
      socket.destroy();
      this.refuse(chain ? "secrets_not_ready" : "unknown_sni", { sni: servername });
      return;
    }
    const admitted = admitTlsPeer(socket, bundle, { revocations: this.ctx.secrets.revocations(chain.tls.bundleSecret) });
    if (!admitted.ok) {
      this.refuse(tlsReason(admitted.error), { sni: servername, err: admitted.error });
      return;
    }
    if (typeof socket.alpnProtocol === "string" && MUX_ALPNS.includes(socket.alpnProtocol)) {
      this.admitted.set(socket, { identity: admitted.identity, bundleSecret: chain.tls.bundleSecret });
      socket.once("close", () => this.admitted.delete(socket));
      this.serveTunnel({ socket, identity: admitted.identity, bundleSecret: chain.tls.bundleSecret, bundle });
      return;
    }
    const caller = admitted.identity.cluster;
    if (chain.consumers && !chain.consumers.includes(caller)) {
      socket.destroy();
      this.refuse("unauthorized_cluster", { sni: servername, caller });
      return;
    }
    this.admitted.set(socket, { identity: admitted.identity, bundleSecret: chain.tls.bundleSecret });
    socket.once("close", () => this.admitted.delete(socket));
    socket.pause();
    const cluster = this.ctx.cluster(chain.cluster);
    if (!cluster) {
      this.ctx.metrics.downstreamRefused.labels({ listener: this.spec.name, reason: "unknown_cluster" }).add();
      socket.destroy();
      return;
    }
    connectUpstream({ cluster, secrets: this.ctx.secrets, onTlsFailure: (reason) => this.ctx.metrics.tlsFailures.labels({ side: "upstream", reason }).add() }).then(
      ({ link }) => {
        if (link.kind === "stream") {
          if (socket.destroyed) return void link.stream.reset("cancel");
          relayStream(link.stream, socket, cluster, "downstream");
        } else {
          if (socket.destroyed) return void link.socket.destroy();
          relay(socket, link.socket, cluster);
        }
        socket.resume();
      },
      (err: unknown) => {
        this.ctx.metrics.downstreamRefused.labels({ listener: this.spec.name, reason: "no_healthy_upstream" }).add();
        this.ctx.logger.warn("no local endpoint accepted the connection", { listener: this.spec.name, sni: servername, err: asError(err) });
        socket.destroy();
      },
    );
  }

  private serveTunnel(peer: TunnelPeer): void {
    const { metrics, logger } = this.ctx;
    const active = metrics.muxActiveTunnels.labels({ side: "accepted" });
    metrics.muxTunnels.labels({ side: "accepted" }).add();
    active.add(1);
    const session = new MuxSession({
      socket: peer.socket,
      role: "server",
      maxStreams: MUX_MAX_STREAMS,
      pings: peer.socket.alpnProtocol === MUX_ALPN_PING,
      // A dialler whose host died or whose process hangs sends no FIN: without our own PINGs its streams, and the
      // backend connections they relay, would stay open until the kernel gives up on the socket, if ever.
      ...(this.keepAlive ? { keepAlive: this.keepAlive } : {}),
      onKeepAliveTimeout: () => {
        metrics.muxAcceptedKeepAliveTimeouts.labels().add();
        logger.warn("dialling gateway silent past the keep-alive timeout: tunnel closed", { listener: this.spec.name, caller: peer.identity.cluster, streams: session.activeStreams, ...this.keepAlive });
      },
      onStream: (stream) => this.onStream(stream, peer),
      onProtocolError: (err) => {
        metrics.muxProtocolErrors.labels({ side: "accepted", reason: err.reason }).add();
        logger.warn("closed a tunnel on bad input", { listener: this.spec.name, caller: peer.identity.cluster, reason: err.reason, err });
      },
      onClose: () => {
        active.add(-1);
        this.tunnels.delete(session);
      },
    });
    this.tunnels.add(session);
  }

  /** One stream of a tunnel: the same checks and relay as one connection. */
  private onStream(stream: MuxStream, peer: TunnelPeer): void {
    const name = this.spec.name;
    const { metrics } = this.ctx;
    const chain = this.chains.get(stream.service);
    if (!chain || chain.tls.bundleSecret !== peer.bundleSecret) {
      stream.reset("unknown_service");
      this.refuse("unknown_sni", { sni: stream.service.slice(0, 255), caller: peer.identity.cluster, tunnel: true });
      return;
    }
    const bundle = this.ctx.secrets.bundle(chain.tls.bundleSecret);
    if (bundle && bundle !== peer.bundle) {
      // The bundle rotated since the tunnel was admitted: the peer's chain must still pass (admitTlsPeer cuts the tunnel otherwise).
      const admitted = admitTlsPeer(peer.socket, bundle, { revocations: this.ctx.secrets.revocations(chain.tls.bundleSecret) });
      if (!admitted.ok) return this.refuse(tlsReason(admitted.error), { sni: stream.service, err: admitted.error, tunnel: true });
      peer.bundle = bundle;
    }
    if (chain.consumers && !chain.consumers.includes(peer.identity.cluster)) {
      stream.reset("unauthorized_cluster");
      this.refuse("unauthorized_cluster", { sni: stream.service, caller: peer.identity.cluster, tunnel: true });
      return;
    }
    const cluster = this.ctx.cluster(chain.cluster);
    if (!cluster) {
      metrics.downstreamRefused.labels({ listener: name, reason: "unknown_cluster" }).add();
      stream.reset("no_healthy_upstream");
      return;
    }
    metrics.downstreamStreams.labels({ listener: name }).add();
    const activeStreams = metrics.downstreamActiveStreams.labels({ listener: name });
    connectUpstream({ cluster, secrets: this.ctx.secrets, reads: this.reads, onTlsFailure: (reason) => metrics.tlsFailures.labels({ side: "upstream", reason }).add() }).then(
      ({ link }) => {
        // No tunnels are passed to connectUpstream here, so the link is a socket.
        if (link.kind === "stream" || stream.closed) {
          if (link.kind === "stream") link.stream.reset("cancel");
          else link.socket.destroy();
          return void stream.reset("no_healthy_upstream");
        }
        activeStreams.add(1);
        link.socket.once("close", () => activeStreams.add(-1));
        stream.accept();
        relayStream(stream, link.socket, cluster, "upstream", link.reader);
      },
      (err: unknown) => {
        metrics.downstreamRefused.labels({ listener: name, reason: "no_healthy_upstream" }).add();
        this.ctx.logger.warn("no local endpoint accepted the stream", { listener: name, sni: stream.service, err: asError(err) });
        stream.reset("no_healthy_upstream");
      },
    );
  }
}
