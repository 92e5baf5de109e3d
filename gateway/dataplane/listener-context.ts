import type { Logger } from "../../common/index.ts";
import type { ConnectionSet } from "./connection-set.ts";
import type { GatewayMetrics } from "./metrics.ts";
import type { RouteConfigSpec } from "./resources.ts";
import type { SecretStore } from "./secret-store.ts";
import type { TunnelPool } from "./tunnel-pool.ts";
import type { UpstreamCluster } from "./upstream-cluster.ts";

/** What a running listener needs from the gateway; read at connection time, so updates apply to new connections only. */
export interface ListenerContext {
  cluster(name: string): UpstreamCluster | undefined;
  /** An RDS route configuration, read per request. */
  route(name: string): RouteConfigSpec | undefined;
  readonly secrets: SecretStore;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly connections: ConnectionSet;
  readonly handshakeTimeoutMs: number;
  /** Tunnels to peer gateways (fedgate-mux/1); undefined when the bootstrap turned them off. */
  readonly tunnels: TunnelPool | undefined;
}
