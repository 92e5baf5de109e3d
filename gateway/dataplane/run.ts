import { createLogger, type Logger } from "../../common/index.ts";
import { loadBootstrap, type Bootstrap } from "./bootstrap.ts";
import { GatewayBootstrapError } from "./errors.ts";
import { Gateway } from "./gateway.ts";

/**
 * `fedgate gateway --bootstrap <file>`: runs the data plane until SIGTERM or
 * SIGINT, then drains (stops accepting, lets open connections finish up to
 * `drain_timeout_ms`) and resolves with the exit code.
 */
export async function runGateway(options: { bootstrapFile: string; logger?: Logger }): Promise<number> {
  const logger = options.logger ?? createLogger();
  let bootstrap: Bootstrap;
  try {
    bootstrap = await loadBootstrap(options.bootstrapFile);
  } catch (err) {
    if (!(err instanceof GatewayBootstrapError)) throw err;
    logger.error("invalid bootstrap", { err, problems: err.problems });
    return 2;
  }
  const gateway = await Gateway.start({ bootstrap, logger });
  logger.info("gateway started", { node: bootstrap.node.id, admin: `${bootstrap.admin.address}:${gateway.adminPort}`, xds: bootstrap.xds_servers[0]?.server_uri });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGTERM", () => resolve("SIGTERM"));
    process.once("SIGINT", () => resolve("SIGINT"));
  });
  logger.info("signal received; draining", { signal });
  const cut = await gateway.drain();
  await gateway.close();
  logger.info("gateway stopped", { connectionsCut: cut });
  return 0;
}
