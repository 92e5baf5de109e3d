import { asError, createLogger, type Logger } from "../../common/index.ts";
import { XdsServer } from "../../gateway/index.ts";
import { connectOptionsFor } from "../exchange/bus-credentials.ts";
import { clusterInboxPrefix } from "../exchange/bus-permissions.ts";
import { Exchange } from "../exchange/exchange.ts";
import { connectBus } from "../exchange/nats-bus.ts";
import { FederationController } from "../kube/controller.ts";
import { DataplaneFeed } from "../kube/dataplane-feed.ts";
import { loadKubeConfig } from "../kube/kube-config-source.ts";
import { ControllerConfigError, loadControllerConfig, type ControllerConfig } from "./config.ts";

/** Exit code for a config file that does not parse (as for any bad command line). */
export const EXIT_BAD_CONFIG = 2;
export const EXIT_START_FAILED = 1;

/**
 * `fedgate controller --config <file>`: one cluster's controller (exchange,
 * Kubernetes reconcilers, optional leader election) and the xDS server its
 * gateway connects to, until SIGTERM or SIGINT; then it drains: no new
 * reconciles, the Lease handed over, the bus and xDS connections closed.
 */
export async function runController(options: { configFile: string; logger?: Logger; stderr?: (line: string) => void }): Promise<number> {
  let config: ControllerConfig;
  try {
    config = await loadControllerConfig(options.configFile);
  } catch (err) {
    if (!(err instanceof ControllerConfigError)) throw err;
    const write = options.stderr ?? ((line: string) => process.stderr.write(`${line}\n`));
    write(`fedgate controller: ${err.code}: invalid config ${options.configFile}`);
    for (const p of err.problems) write(`  ${p.path || "(file)"}: ${p.message}`);
    return EXIT_BAD_CONFIG;
  }
  const logger = (options.logger ?? createLogger({ level: config.log.level, format: config.log.format })).child({ cluster: config.cluster });
  let running: RunningController;
  try {
    running = await startController(config, logger);
  } catch (err) {
    // NATS or the apiserver unreachable, or the xDS port taken: nothing to drain, say why and stop.
    logger.error("controller failed to start", { err: asError(err) });
    return EXIT_START_FAILED;
  }
  logger.info("controller started", { xds: running.xds.address, leaderElection: config.leaderElection?.identity ?? false });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  logger.info("signal received; draining", { signal });
  await running.stop();
  logger.info("controller stopped");
  return 0;
}

export interface RunningController {
  controller: FederationController;
  xds: XdsServer;
  stop(): Promise<void>;
}

export async function startController(config: ControllerConfig, logger: Logger): Promise<RunningController> {
  const bus = await connectBus({
    servers: config.nats.servers,
    name: `fedgate-controller/${config.cluster}`,
    ...connectOptionsFor({ creds: config.material.creds, inboxPrefix: clusterInboxPrefix(config.cluster) }),
  });
  const exchange = new Exchange({
    bus,
    signer: config.material.signer,
    trustBundle: config.material.bundle,
    ...(config.leaseTtlMs !== undefined ? { leaseTtlMs: config.leaseTtlMs } : {}),
    logger,
    registration: {
      name: config.cluster,
      clusterSet: config.clusterSet,
      region: config.locality.region,
      zones: config.locality.zone ? [config.locality.zone] : [],
      network: config.locality.network,
      gatewayAddresses: [config.gateway.exportAddress],
      identity: `spiffe://${config.trust.trustDomain}/cluster/${config.cluster}/gateway`,
    },
  });
  await exchange.start();
  const controller = new FederationController({
    cluster: config.cluster,
    kubeConfig: loadKubeConfig(config.kubeconfig),
    exchange,
    gateway: config.gateway.exportAddress,
    gatewayImportAddress: config.gateway.importAddress,
    importPorts: config.gateway.importPorts,
    createNamespaces: config.createNamespaces,
    ...(config.leaderElection ? { leaderElection: config.leaderElection } : {}),
    logger,
  });
  await controller.start();
  const xds = await XdsServer.start({
    host: config.xds.host,
    port: config.xds.port,
    ...(config.xds.introspectionPort !== undefined ? { introspectionPort: config.xds.introspectionPort } : {}),
    controlPlaneId: `fedgate-controller/${config.cluster}`,
    logger,
  });
  const feed = new DataplaneFeed({
    controller,
    exchange,
    sink: xds,
    self: { cluster: config.cluster, region: config.locality.region, zone: config.locality.zone, network: config.locality.network },
    tls: () => ({
      trustDomain: config.trust.trustDomain,
      gatewayCertChainPem: config.material.gatewayCertPem,
      gatewayKeyPem: config.material.gatewayKeyPem,
      trustBundlePems: exchange.trustBundle().caPems(),
    }),
    logger,
  });
  feed.start();
  return {
    controller,
    xds,
    async stop() {
      await feed.stop();
      await controller.stop();
      await exchange.close();
      await bus.close();
      await xds.close();
    },
  };
}
