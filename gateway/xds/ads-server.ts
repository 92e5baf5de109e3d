import * as grpc from "@grpc/grpc-js";
import type { Problem } from "../../common/index.ts";
import type { SessionEvent } from "./ads-session-base.ts";
import type { DiscoveryRequest, DiscoveryResponse } from "./ads-session.ts";
import { ADS_METHOD_PATH, createAdsCodec, DELTA_ADS_METHOD_PATH } from "./ads-codec.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from "./delta-ads-session.ts";
import { XdsError, XdsOptionsError, XdsServerError } from "./errors.ts";
import type { FederationSnapshotInput } from "./input.ts";
import { startIntrospection } from "./introspection-http.ts";
import type { Flavour } from "./translate.ts";
import type { EncodedSet } from "./resource-validation.ts";
import { XdsCore, type NodeConfigDump, type ServerStatus, type XdsCoreOptions } from "./xds-core.ts";

export interface XdsServerOptions extends XdsCoreOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: a random free port. */
  port?: number;
  /** Serve `/status` and `/config_dump` over HTTP on this port (0: random); absent: no HTTP endpoint. */
  introspectionPort?: number;
  /** Reported in every DiscoveryResponse's control_plane.identifier. */
  controlPlaneId?: string;
}

/**
 * The ADS server: `envoy.service.discovery.v3.AggregatedDiscoveryService`
 * on @grpc/grpc-js, both StreamAggregatedResources (state of the world) and
 * DeltaAggregatedResources (incremental), served side by side from the same
 * snapshots. The only file of gateway/xds that talks gRPC; the protocols live
 * in AdsSession, DeltaAdsSession and XdsCore.
 */
export class XdsServer {
  readonly core: XdsCore;
  readonly host: string;
  readonly port: number;
  readonly introspection: { host: string; port: number } | undefined;
  private readonly server: grpc.Server;
  private readonly calls = new Set<AdsCall>();
  private readonly closeIntrospection: (() => Promise<void>) | undefined;
  private closed = false;

  private constructor(init: { core: XdsCore; server: grpc.Server; host: string; port: number; introspection?: { host: string; port: number; close: () => Promise<void> }; calls: XdsServer["calls"] }) {
    this.core = init.core;
    this.server = init.server;
    this.host = init.host;
    this.port = init.port;
    this.calls = init.calls;
    this.introspection = init.introspection ? { host: init.introspection.host, port: init.introspection.port } : undefined;
    this.closeIntrospection = init.introspection?.close;
  }

  /** Starts serving; the address is in `host`/`port`. */
  static async start(options: XdsServerOptions = {}): Promise<XdsServer> {
    const problems: Problem[] = [];
    const host = options.host ?? "127.0.0.1";
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65_535) problems.push({ path: "port", message: "must be an integer in 0..65535" });
    if (options.introspectionPort !== undefined && (!Number.isInteger(options.introspectionPort) || options.introspectionPort < 0 || options.introspectionPort > 65_535))
      problems.push({ path: "introspectionPort", message: "must be an integer in 0..65535" });
    if (problems.length) throw new XdsOptionsError("XdsServer options", problems);
    const core = new XdsCore(options);
    // grpc-js copies each serialized response into its frame at once, so one reused buffer serves every stream.
    const codec = createAdsCodec(core.registry, { reuseResponseBuffer: true });
    const controlPlaneId = options.controlPlaneId ?? "fedgate";
    const calls = new Set<AdsCall>();
    const server = new grpc.Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
    const definition: grpc.ServiceDefinition = {
      StreamAggregatedResources: {
        path: ADS_METHOD_PATH,
        requestStream: true,
        responseStream: true,
        requestSerialize: (r: DiscoveryRequest) => codec.encodeRequest(r),
        requestDeserialize: (b: Buffer) => codec.decodeRequest(b),
        responseSerialize: (r: DiscoveryResponse) => codec.encodeResponse(r, controlPlaneId),
        responseDeserialize: (b: Buffer) => b,
      },
      DeltaAggregatedResources: {
        path: DELTA_ADS_METHOD_PATH,
        requestStream: true,
        responseStream: true,
        requestSerialize: (r: DeltaDiscoveryRequest) => codec.encodeDeltaRequest(r),
        requestDeserialize: (b: Buffer) => codec.decodeDeltaRequest(b),
        responseSerialize: (r: DeltaDiscoveryResponse) => codec.encodeDeltaResponse(r, controlPlaneId),
        responseDeserialize: (b: Buffer) => b,
      },
    };
    server.addService(definition, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
        serveStream(call, calls, (send) => core.openSession(send));
      },
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) => {
        serveStream(call, calls, (send) => core.openDeltaSession(send));
      },
    });
    const boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
        if (error) reject(new XdsServerError(`cannot bind the ADS server on ${host}:${port}`, { cause: error, retryable: true }));
        else resolve(bound);
      });
    });
    let introspection: { host: string; port: number; close: () => Promise<void> } | undefined;
    if (options.introspectionPort !== undefined) {
      try {
        introspection = await startIntrospection(core, { host, port: options.introspectionPort });
      } catch (error) {
        server.forceShutdown();
        throw new XdsServerError(`cannot bind the introspection endpoint on ${host}:${options.introspectionPort}`, { cause: error, retryable: true });
      }
    }
    return new XdsServer({ core, server, host, port: boundPort, introspection, calls });
  }

  /** `host:port`, for a bootstrap's `server_uri`. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  setSnapshot(snapshot: FederationSnapshotInput): void {
    this.core.setSnapshot(snapshot);
  }

  flush(): boolean {
    return this.core.flush();
  }

  resources(flavour: Flavour): EncodedSet | undefined {
    return this.core.resources(flavour);
  }

  status(): ServerStatus {
    return this.core.status();
  }

  configDump(nodeId: string): NodeConfigDump | undefined {
    return this.core.configDump(nodeId);
  }

  onEvent(listener: (event: SessionEvent) => void): () => void {
    return this.core.onEvent(listener);
  }

  /** Ends every stream and stops serving. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.core.close();
    for (const call of this.calls) if (!call.writableEnded) call.end();
    this.calls.clear();
    this.server.forceShutdown();
    await this.closeIntrospection?.();
  }
}

/** What `close()` needs of an open stream, whatever its protocol. */
interface AdsCall {
  readonly writableEnded: boolean;
  end(): unknown;
}

/** Wires one ADS stream, of either protocol, to its session; a protocol error ends only that stream. */
function serveStream<Req, Res>(
  call: grpc.ServerDuplexStream<Req, Res>,
  calls: Set<AdsCall>,
  open: (send: (response: Res) => void) => { session: { handleRequest(request: Req): void }; close: () => void },
): void {
  calls.add(call);
  const { session, close } = open((response) => {
    if (!call.writableEnded) call.write(response);
  });
  const end = () => {
    close();
    calls.delete(call);
  };
  call.on("data", (request: Req) => {
    try {
      session.handleRequest(request);
    } catch (error) {
      if (!(error instanceof XdsError)) throw error;
      end();
      call.emit("error", { code: grpc.status.INVALID_ARGUMENT, details: error.message });
    }
  });
  call.on("end", () => {
    end();
    if (!call.writableEnded) call.end();
  });
  call.on("cancelled", end);
  call.on("close", end);
  call.on("error", end);
}
