/**
 * Child process: one cluster's FederationController with its own Exchange and
 * bus connection, so that its memory and CPU are measured alone. Driven over
 * IPC (see controller-protocol.ts); started by controller-fleet.ts.
 */
import type { ClientRequest } from "node:http";
import { subscribe } from "node:diagnostics_channel";
import * as k8s from "@kubernetes/client-node";
import { createLogger } from "../../common/index.ts";
import { Exchange, FederationController, connectBus, connectOptionsFor, createRecordSigner, type AdminBus } from "../../federation/index.ts";
import { TrustBundle } from "../../trust/index.ts";
import { ParentMessage, type ChildMessage, type ControllerChildConfig } from "./controller-protocol.ts";

/** Warnings echoed to stderr; the rest are only counted, so a failing run cannot flood the terminal. */
const MAX_ECHOED_LOG_LINES = 20;

let errorLogs = 0;
const logger = createLogger({
  level: "warn",
  write: (line) => {
    errorLogs += 1;
    if (errorLogs <= MAX_ECHOED_LOG_LINES) process.stderr.write(`${line}\n`);
  },
});
// Counts the controller's apiserver writes and their response times, without touching the controller.
const writes = { count: 0, ms: 0 };
const writeStarted = new WeakMap<ClientRequest, number>();
subscribe("http.client.request.start", (message) => {
  const { request } = message as { request: ClientRequest };
  if (request.method !== "GET") writeStarted.set(request, performance.now());
});
subscribe("http.client.response.finish", (message) => {
  const { request } = message as { request: ClientRequest };
  const started = writeStarted.get(request);
  if (started === undefined) return;
  writes.count += 1;
  writes.ms += performance.now() - started;
});

let running: { controller: FederationController; exchange: Exchange; bus: AdminBus } | undefined;

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function start(config: ControllerChildConfig): Promise<void> {
  const kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromString(config.kubeconfig);
  const bus = await connectBus({ servers: config.natsUrls, name: `fedgate-controller/${config.cluster}`, ...connectOptionsFor(config.creds) });
  const exchange = new Exchange({
    bus,
    signer: createRecordSigner({ cluster: config.cluster, chainPem: config.chainPem, keyPem: config.keyPem }),
    trustBundle: TrustBundle.fromPem(config.bundlePem, { trustDomain: config.trustDomain, sequence: 1 }),
    leaseTtlMs: config.leaseTtlMs,
    logger,
    registration: {
      name: config.cluster,
      clusterSet: config.clusterSet,
      region: "region-1",
      zones: ["zone-a"],
      network: "net-1",
      gatewayAddresses: [{ host: "127.0.0.1", port: 15443 }],
      identity: `spiffe://${config.trustDomain}/cluster/${config.cluster}/gateway`,
    },
  });
  await exchange.start();
  const controller = new FederationController({
    cluster: config.cluster,
    kubeConfig,
    exchange,
    gateway: { host: `gw.${config.cluster}.example`, port: 15443 },
    gatewayImportAddress: config.gatewayImportAddress,
    logger,
  });
  await controller.start();
  running = { controller, exchange, bus };
}

async function stop(): Promise<void> {
  if (!running) return;
  await running.controller.stop();
  await running.exchange.close();
  await running.bus.close();
  running = undefined;
}

function usage(gc: boolean): ChildMessage {
  if (gc) {
    global.gc?.();
    global.gc?.();
  }
  const memory = process.memoryUsage();
  const cpu = process.resourceUsage();
  return {
    type: "usage",
    usage: {
      rssBytes: memory.rss,
      heapUsedBytes: memory.heapUsed,
      heapTotalBytes: memory.heapTotal,
      externalBytes: memory.external,
      cpuUs: cpu.userCPUTime + cpu.systemCPUTime,
      errorLogs,
      writeRequests: writes.count,
      writeRequestMs: writes.ms,
    },
  };
}

process.on("message", (raw: unknown) => {
  const message = ParentMessage.parse(raw);
  const handle = async (): Promise<ChildMessage> => {
    switch (message.type) {
      case "start":
        await start(message.config);
        return { type: "started" };
      case "usage":
        return usage(message.gc);
      case "stop":
        await stop();
        return { type: "stopped" };
    }
  };
  handle().then(
    (reply) => {
      send(reply);
      // Exit on our own after stop, so --cpu-prof can write its profile.
      if (reply.type === "stopped") process.disconnect();
    },
    (err: unknown) => send({ type: "failed", message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
  );
});
