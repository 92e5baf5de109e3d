import * as k8s from "@kubernetes/client-node";
import { createLogger, type LogLevel } from "../../common/index.ts";
import { FederationController, MCS_GROUP, MCS_VERSION, type FederationControllerOptions } from "../../federation/index.ts";
import { startClusters, waitFor, type KubeCluster } from "../env/index.ts";
import { ExchangeHarness } from "./exchange-harness.ts";

export const GATEWAY_IMPORT_ADDRESS = "10.255.0.10";
export const NAMESPACE = "shop";

export interface McsObject {
  metadata: { name?: string; resourceVersion?: string; finalizers?: string[]; uid?: string };
  spec?: { type?: string; ports?: { name?: string; port: number; protocol: string }[]; ips?: string[]; sessionAffinity?: string };
  status?: { clusters?: { cluster: string }[]; conditions?: { type: string; status: string; reason: string; observedGeneration?: number }[] };
}

export interface ExportOptions {
  sessionAffinity?: string;
  ready?: boolean;
  ports?: { name: string; port: number }[];
  headless?: boolean;
  externalName?: string;
}

/** Real kube-apiservers (one per simulated cluster), a real NATS, and one FederationController per cluster. */
export class ControllerHarness {
  readonly h: ExchangeHarness;
  readonly kube: Map<string, KubeCluster>;
  readonly controllers = new Map<string, FederationController>();

  private constructor(h: ExchangeHarness, kube: Map<string, KubeCluster>) {
    this.h = h;
    this.kube = kube;
  }

  static async start(options: { clusters: number; leaseTtlMs: number }): Promise<ControllerHarness> {
    const clusters = await startClusters(options.clusters);
    const h = await ExchangeHarness.start({ clusters: clusters.map((c) => c.name), leaseTtlMs: options.leaseTtlMs });
    const harness = new ControllerHarness(h, new Map(clusters.map((c) => [c.name, c])));
    for (const c of clusters) await harness.core(c.name).createNamespace({ body: { metadata: { name: NAMESPACE } } });
    return harness;
  }

  /** Starts `name`'s controller (and its exchange, unless running); `kubeConfig` overrides how it reaches its apiserver. */
  async startController(
    name: string,
    options: Partial<Pick<FederationControllerOptions, "kubeConfig" | "createNamespaces" | "gateway" | "gatewayImportAddress" | "importPorts" | "leaderElection" | "logger">> = {},
  ): Promise<FederationController> {
    const exchange = this.h.exchanges.get(name) ?? (await this.h.startExchange(name));
    const c = new FederationController({
      cluster: name,
      kubeConfig: options.kubeConfig ?? this.cluster(name).kubeConfig,
      createNamespaces: options.createNamespaces ?? false,
      exchange,
      gateway: options.gateway ?? { host: `gw.${name}.example`, port: 15443 },
      gatewayImportAddress: options.gatewayImportAddress ?? GATEWAY_IMPORT_ADDRESS,
      ...(options.importPorts ? { importPorts: options.importPorts } : {}),
      ...(options.leaderElection ? { leaderElection: options.leaderElection } : {}),
      // FEDGATE_TEST_LOG=debug shows what the controllers do while a test runs.
      ...(options.logger ? { logger: options.logger } : process.env.FEDGATE_TEST_LOG ? { logger: createLogger({ level: process.env.FEDGATE_TEST_LOG as LogLevel, format: "pretty" }) } : {}),
    });
    await c.start();
    this.controllers.set(name, c);
    return c;
  }

  async stopController(name: string): Promise<void> {
    await this.controllers.get(name)?.stop();
    this.controllers.delete(name);
  }

  cluster(name: string): KubeCluster {
    const c = this.kube.get(name);
    if (!c) throw new Error(`no cluster ${name}`);
    return c;
  }

  core(name: string): k8s.CoreV1Api {
    return this.cluster(name).kubeConfig.makeApiClient(k8s.CoreV1Api);
  }

  discovery(name: string): k8s.DiscoveryV1Api {
    return this.cluster(name).kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
  }

  custom(name: string): k8s.CustomObjectsApi {
    return this.cluster(name).kubeConfig.makeApiClient(k8s.CustomObjectsApi);
  }

  async read(name: string, plural: "serviceexports" | "serviceimports", object: string): Promise<McsObject | undefined> {
    try {
      return (await this.custom(name).getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: NAMESPACE, plural, name: object })) as McsObject;
    } catch (err) {
      if (err instanceof k8s.ApiException && err.code === 404) return undefined;
      throw err;
    }
  }

  async createServiceExport(name: string, service: string): Promise<void> {
    await this.custom(name).createNamespacedCustomObject({
      group: MCS_GROUP,
      version: MCS_VERSION,
      namespace: NAMESPACE,
      plural: "serviceexports",
      body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: service } },
    });
  }

  async deleteServiceExport(name: string, service: string): Promise<void> {
    await this.custom(name).deleteNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: NAMESPACE, plural: "serviceexports", name: service });
  }

  /** A Service with two endpoints in zone-a, and its ServiceExport. */
  async exportService(name: string, service: string, options: ExportOptions = {}): Promise<void> {
    const ports = options.ports ?? [{ name: "http", port: 80 }];
    const spec: k8s.V1ServiceSpec = options.externalName
      ? { type: "ExternalName", externalName: options.externalName }
      : { ports: ports.map((p) => ({ ...p, protocol: "TCP" })), sessionAffinity: options.sessionAffinity ?? "None", ...(options.headless ? { clusterIP: "None" } : {}) };
    await this.core(name).createNamespacedService({ namespace: NAMESPACE, body: { metadata: { name: service }, spec } });
    if (!options.externalName) {
      await this.discovery(name).createNamespacedEndpointSlice({
        namespace: NAMESPACE,
        body: {
          metadata: { name: `${service}-1`, labels: { "kubernetes.io/service-name": service } },
          addressType: "IPv4",
          endpoints: ["10.1.0.1", "10.1.0.2"].map((ip) => ({ addresses: [ip], zone: "zone-a", conditions: { ready: options.ready ?? true } })),
          ports: ports.map((p) => ({ name: p.name, port: p.port + 8000, protocol: "TCP" })),
        },
      });
    }
    await this.createServiceExport(name, service);
  }

  /** Marks every endpoint of `service` in cluster `name` ready or not. */
  async setReady(name: string, service: string, ready: boolean): Promise<void> {
    await this.discovery(name).patchNamespacedEndpointSlice(
      {
        namespace: NAMESPACE,
        name: `${service}-1`,
        body: [{ op: "replace", path: "/endpoints", value: ["10.1.0.1", "10.1.0.2"].map((ip) => ({ addresses: [ip], zone: "zone-a", conditions: { ready } })) }],
      },
      k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.JsonPatch),
    );
  }

  async stop(): Promise<void> {
    for (const c of this.controllers.values()) await c.stop();
    await Promise.all([...this.kube.values()].map((k) => k.stop()));
    await this.h.stop();
  }
}

export const condition = (o: McsObject | undefined, type: string) => o?.status?.conditions?.find((c) => c.type === type);
export const eventually = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000) => waitFor(what, probe, { timeoutMs, intervalMs: 100 });
