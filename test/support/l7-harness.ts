import * as grpc from "@grpc/grpc-js";
import { createServer as createH1Server } from "node:http";
import { createServer as createH2Server, type ServerHttp2Stream } from "node:http2";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { silentLogger } from "../../common/index.ts";
import { Gateway, XdsServer, type FederationSnapshotInput, type ProtoRegistry, type ServicePolicyInput } from "../../gateway/index.ts";
import { replayed } from "../../gateway/internal.ts";
import type { ClusterSetPki } from "./clusterset-pki.ts";
import { gatewayBootstrap, gatewayLeaf, GatewayTopology, wireExportPorts, withTunnelOptions } from "./gateway-harness.ts";

/**
 * Loopback fixtures for the gateway's L7 path: HTTP backends speaking
 * HTTP/1.1 and h2c on one port, gRPC backends (@grpc/grpc-js), and simulated
 * clusters each with a control plane and a gateway whose import listener on
 * port 9000 carries both services (told apart by Host / :authority).
 */

export const L7_PORT = 9000;
export const WEB = { key: "demo/web", namespace: "demo", name: "web" } as const;
export const GREETER = { key: "demo/greeter", namespace: "demo", name: "greeter" } as const;
export const WEB_HOST = "web.demo.svc.clusterset.local";
export const GREETER_AUTHORITY = `greeter.demo.svc.clusterset.local:${L7_PORT}`;
export const WEB_CLUSTER = `outbound|${L7_PORT}||${WEB_HOST}`;
export const GREETER_CLUSTER = `outbound|${L7_PORT}||greeter.demo.svc.clusterset.local`;
export const GREET_PATH = "/demo.Greeter/Greet";
/** Longest `raw` waits for the gateway to answer or close before the client gives up. */
const RAW_WAIT_MS = 2_000;
/** The body of the response `HttpBackend` hides behind a smuggling one. */
export const SMUGGLED_MARK = "smuggled";

/**
 * An HTTP backend: answers `<id> <method> <path> <body>` with `x-backend: <id>`;
 * `/status/<n>` answers n, `/slow/<ms>` waits first. h1 and h2c (by preface).
 * `GET /healthz` (HTTP/1.1, not counted in `hits`) answers `healthStatus`.
 * Over HTTP/1.1, `/smuggle` answers a response framed both by Content-Length
 * and chunked, with a second response hidden in its body (`SMUGGLED_MARK`).
 */
export class HttpBackend {
  port = 0;
  hits = 0;
  healthStatus = 200;
  /** The Host header of each health check received, in order. */
  readonly healthChecks: string[] = [];
  /** HTTP/1.1 keep-alive timeout (Node's default 5 s); takes effect at `listen`. */
  keepAliveTimeoutMs = 5_000;
  /** Close a kept-alive connection, unanswered, when its next request arrives (a server dropping an idle connection as a request crosses). */
  dropReused = false;
  /** Requests dropped that way. */
  dropped = 0;
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly id: string,
    readonly host = "127.0.0.1",
  ) {}

  static async start(id: string, host = "127.0.0.1"): Promise<HttpBackend> {
    const b = new HttpBackend(id, host);
    await b.listen();
    return b;
  }

  async listen(port = this.port): Promise<void> {
    const handle = (method: string, path: string, body: string, answer: (status: number, text: string) => void) => {
      this.hits += 1;
      const status = /^\/status\/(\d+)/.exec(path);
      const slow = /^\/slow\/(\d+)/.exec(path);
      const reply = () => answer(status ? Number(status[1]) : 200, `${this.id} ${method} ${path} ${body}`);
      if (slow) setTimeout(reply, Number(slow[1]));
      else reply();
    };
    const answered = new WeakSet<Socket>();
    const h1 = createH1Server((req, res) => {
      if (this.dropReused && answered.has(req.socket)) {
        this.dropped += 1;
        req.socket.destroy();
        return;
      }
      answered.add(req.socket);
      if (req.method === "GET" && req.url === "/healthz") {
        this.healthChecks.push(req.headers.host ?? "");
        res.writeHead(this.healthStatus).end();
        return;
      }
      if (req.url === "/smuggle") {
        this.hits += 1;
        req.socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: ${SMUGGLED_MARK.length}\r\n\r\n${SMUGGLED_MARK}`);
        return;
      }
      let body = "";
      req.on("data", (c: Buffer) => (body += c.toString()));
      req.on("end", () => handle(req.method ?? "", req.url ?? "", body, (status, text) => res.writeHead(status, { "x-backend": this.id, "content-type": "text/plain" }).end(text)));
    });
    h1.keepAliveTimeout = this.keepAliveTimeoutMs;
    const h2 = createH2Server();
    h2.on("stream", (stream: ServerHttp2Stream, headers) => {
      let body = "";
      stream.on("error", () => stream.destroy());
      stream.on("data", (c: Buffer) => (body += c.toString()));
      stream.on("end", () =>
        handle(String(headers[":method"]), String(headers[":path"]), body, (status, text) => {
          if (stream.destroyed) return;
          stream.respond({ ":status": status, "x-backend": this.id, "content-type": "text/plain" });
          stream.end(text);
        }),
      );
    });
    const server = createServer((s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => s.destroy());
      s.once("data", (first: Buffer) => {
        if (first.subarray(0, 3).toString() !== "PRI") {
          s.pause();
          s.unshift(first);
          h1.emit("connection", s);
          s.resume();
          return;
        }
        h2.emit("connection", replayed(s, first));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, this.host, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Stops listening and resets open connections (a dead pod). */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Sends raw bytes on a fresh connection; resolves with what came back once the gateway closes (or after `waitMs`). */
export function raw(port: number, bytes: Buffer | string, waitMs = RAW_WAIT_MS): Promise<{ reply: string; closedByGateway: boolean }> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: "127.0.0.1", port });
    let reply = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reply, closedByGateway: false });
    }, waitMs);
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (c: Buffer) => (reply += c.toString("latin1")));
    socket.on("error", () => socket.destroy());
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ reply, closedByGateway: true });
    });
  });
}

const bytes = (b: Buffer) => b;

/** A gRPC backend (@grpc/grpc-js) with one unary method answering `<id>:<request>`; `fail` makes it answer UNAVAILABLE, `delayMs` answer late. */
export class GrpcBackend {
  port = 0;
  fail = false;
  delayMs = 0;
  private server: grpc.Server | undefined;
  constructor(readonly id: string) {}

  static async start(id: string): Promise<GrpcBackend> {
    const b = new GrpcBackend(id);
    await b.listen();
    return b;
  }

  async listen(): Promise<void> {
    const server = new grpc.Server();
    server.addService(
      { Greet: { path: GREET_PATH, requestStream: false, responseStream: false, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } },
      {
        Greet: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
          if (this.fail) return cb({ code: grpc.status.UNAVAILABLE, details: `${this.id} unavailable` });
          setTimeout(() => {
            if (call.cancelled) return;
            call.sendMetadata(new grpc.Metadata());
            cb(null, Buffer.from(`${this.id}:${call.request.toString()}`));
          }, this.delayMs);
        },
      },
    );
    this.port = await new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${this.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))));
    this.server = server;
  }

  async kill(): Promise<void> {
    this.server?.forceShutdown();
    this.server = undefined;
  }
}

/** A gRPC client of the greeter through a gateway's import port; returns the reply and the response metadata. */
export function greeterClient(port: number): { greet(name: string, deadlineMs?: number, metadata?: Record<string, string>): Promise<{ reply: string; servedBy: string }>; close(): void } {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.default_authority": GREETER_AUTHORITY });
  return {
    greet: (name, deadlineMs = 10_000, metadata = {}) =>
      new Promise((resolve, reject) => {
        let servedBy = "";
        const md = new grpc.Metadata();
        for (const [k, v] of Object.entries(metadata)) md.set(k, v);
        const call = client.makeUnaryRequest(GREET_PATH, bytes, bytes, Buffer.from(name), md, { deadline: Date.now() + deadlineMs }, (err, value) => {
          if (err) return reject(err);
          resolve({ reply: value?.toString() ?? "", servedBy });
        });
        call.on("metadata", (md: grpc.Metadata) => (servedBy = String(md.get("x-fedgate-cluster")[0] ?? "")));
      }),
    close: () => client.close(),
  };
}

interface L7Cluster {
  name: string;
  xds: XdsServer;
  gateway: Gateway;
  web: HttpBackend[];
  grpc: GrpcBackend[];
  leaf: { chainPem: string; keyPem: string };
  /** Revocation lists (PEM) the control plane hands this gateway in its bundle secret. */
  revocationsPem?: string;
}

/** Simulated clusters exporting demo/web (HTTP) and demo/greeter (gRPC) on port 9000; every cluster imports both. */
export class L7Topology extends GatewayTopology<L7Cluster> {
  protected readonly servicePort = L7_PORT;
  policy: ServicePolicyInput = {};
  private constructor(
    private readonly pki: ClusterSetPki,
    private readonly exporters: readonly string[],
  ) {
    super();
  }

  /** `muxTunnels: false`: gateways dial one mTLS connection per pooled upstream connection (no fedgate-mux tunnels). */
  static async start(options: {
    pki: ClusterSetPki;
    registry: ProtoRegistry;
    exporters: readonly string[];
    members: Record<string, number>;
    policy?: ServicePolicyInput;
    handshakeTimeoutMs?: number;
    muxTunnels?: boolean;
    keepAlive?: { intervalMs: number; timeoutMs: number };
  }): Promise<L7Topology> {
    const t = new L7Topology(options.pki, options.exporters);
    t.policy = options.policy ?? {};
    for (const [name, count] of Object.entries(options.members)) {
      const web = await Promise.all(Array.from({ length: count }, (_, i) => HttpBackend.start(`${name}-${i + 1}`)));
      const grpcBackends = await Promise.all(Array.from({ length: count }, (_, i) => GrpcBackend.start(`${name}-${i + 1}`)));
      const xds = await XdsServer.start({});
      const sim: L7Cluster = { name, xds, web, grpc: grpcBackends, leaf: await gatewayLeaf(options.pki, name), gateway: undefined as unknown as Gateway };
      t.clusters.set(name, sim);
      t.push(name);
      sim.gateway = await Gateway.start({ bootstrap: withTunnelOptions(gatewayBootstrap(name, xds, options.handshakeTimeoutMs, L7_PORT), options), logger: silentLogger, registry: options.registry });
    }
    await wireExportPorts(t.clusters, options.exporters, t.exportPorts, (name) => t.push(name));
    return t;
  }

  push(name: string): void {
    const sim = this.get(name);
    const zone = (c: string) => `z-${c}`;
    const exportsOf = (svc: { namespace: string; name: string }, port: { name: string; appProtocol?: string }) =>
      this.exporters.map((cluster) => ({
        cluster,
        namespace: svc.namespace,
        name: svc.name,
        ports: [{ ...port, protocol: "TCP" as const, port: L7_PORT }],
        type: "ClusterSetIP" as const,
        sessionAffinity: "None" as const,
        readyEndpoints: [{ zone: zone(cluster), ready: 1 }],
        gateway: { host: "127.0.0.1", port: this.exportPorts.get(cluster) ?? 15443 },
      }));
    const endpoints = (list: readonly { port: number }[]) => list.map((b) => ({ address: "127.0.0.1", port: b.port, zone: zone(name), ready: true }));
    const snapshot: FederationSnapshotInput = {
      self: { cluster: name, region: `r-${name}`, zone: zone(name) },
      services: [
        { ...WEB, exports: exportsOf(WEB, { name: "http" }) },
        { ...GREETER, exports: exportsOf(GREETER, { name: "grpc", appProtocol: "grpc" }) },
      ],
      clusters: [...new Set([name, ...this.exporters])].map((c) => ({ name: c, leaseLive: true, stale: false })),
      localEndpoints: new Map([
        [WEB.key, endpoints(sim.web)],
        [GREETER.key, endpoints(sim.grpc)],
      ]),
      policies: new Map([
        [WEB.key, this.policy],
        [GREETER.key, this.policy],
      ]),
      tls: { trustDomain: this.pki.trustDomain, gatewayCertChainPem: sim.leaf.chainPem, gatewayKeyPem: sim.leaf.keyPem, trustBundlePems: this.pki.bundle.caPems(), revocationsPem: sim.revocationsPem ?? "" },
    };
    sim.xds.setSnapshot(snapshot);
    sim.xds.flush();
  }

  protected async killBackends(sim: L7Cluster): Promise<void> {
    for (const b of sim.web) await b.kill();
    for (const b of sim.grpc) await b.kill();
  }
}
