import * as k8s from "@kubernetes/client-node";
import { mintClusterCredentials } from "../../federation/index.ts";
import { startClusters, type KubeCluster } from "../../test/env/index.ts";
import { ExchangeHarness } from "../../test/support/exchange-harness.ts";
import { ControllerChild, type ChildRuntime } from "./controller-child.ts";
import { ImportObserver } from "./import-observer.ts";

export const CLUSTERS = ["cluster-a", "cluster-b", "cluster-c"] as const;
const LEASE_TTL_MS = 30_000;

export interface BenchMember {
  name: string;
  kube: KubeCluster;
  controller: ControllerChild;
  observer: ImportObserver;
  core: k8s.CoreV1Api;
  discovery: k8s.DiscoveryV1Api;
  custom: k8s.CustomObjectsApi;
}

/**
 * Three real kube-apiservers, one real nats-server, and each cluster's
 * FederationController in its own child process; the bench process only
 * writes objects and watches them. `extraExchanges` get bus identities for
 * in-process exchanges (the bus-only baseline).
 */
export class BenchClusterSet {
  readonly harness: ExchangeHarness;
  readonly members: BenchMember[];

  private constructor(harness: ExchangeHarness, members: BenchMember[]) {
    this.harness = harness;
    this.members = members;
  }

  static async start(options: { namespaces: string[]; extraExchanges?: string[]; runtime: ChildRuntime; cpuProfileDir?: string }): Promise<BenchClusterSet> {
    const harness = await ExchangeHarness.start({ clusters: [...CLUSTERS, ...(options.extraExchanges ?? [])], leaseTtlMs: LEASE_TTL_MS });
    const members: BenchMember[] = [];
    const kube: KubeCluster[] = [];
    try {
      kube.push(...(await startClusters(CLUSTERS.length)));
      for (const cluster of kube) {
        const core = cluster.kubeConfig.makeApiClient(k8s.CoreV1Api);
        for (const name of options.namespaces) await core.createNamespace({ body: { metadata: { name } } });
        const identity = harness.pki.identity(cluster.name);
        const observer = await ImportObserver.start(cluster.kubeConfig);
        const controller = await ControllerChild.start({
          config: {
            cluster: cluster.name,
            kubeconfig: cluster.kubeConfig.exportConfig(),
            natsUrls: harness.nats.urls,
            creds: await mintClusterCredentials(harness.authority, cluster.name),
            chainPem: identity.controller.chainPem,
            keyPem: identity.controller.privateKeyPem ?? "",
            bundlePem: harness.pki.bundle.toPem(),
            trustDomain: harness.pki.trustDomain,
            clusterSet: "test-set",
            leaseTtlMs: LEASE_TTL_MS,
            gatewayImportAddress: "10.255.0.10",
          },
          runtime: options.runtime,
          ...(options.cpuProfileDir ? { cpuProfileDir: options.cpuProfileDir } : {}),
        });
        members.push({
          name: cluster.name,
          kube: cluster,
          controller,
          observer,
          core,
          discovery: cluster.kubeConfig.makeApiClient(k8s.DiscoveryV1Api),
          custom: cluster.kubeConfig.makeApiClient(k8s.CustomObjectsApi),
        });
      }
      return new BenchClusterSet(harness, members);
    } catch (err) {
      await new BenchClusterSet(harness, members).stop(kube);
      throw err;
    }
  }

  member(name: string): BenchMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new RangeError(`no member ${name}`);
    return m;
  }

  async stop(kube: KubeCluster[] = this.members.map((m) => m.kube)): Promise<void> {
    for (const m of this.members) m.observer.stop();
    await Promise.all(this.members.map((m) => m.controller.stop()));
    await Promise.all(kube.map((k) => k.stop()));
    await this.harness.stop();
  }
}
