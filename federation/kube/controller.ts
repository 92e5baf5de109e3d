import * as k8s from "@kubernetes/client-node";
import { WorkQueue, silentLogger, type Logger } from "../../common/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import type { EndpointAddress } from "../exchange/records.ts";
import { ExportReconciler, type ServiceExportObject } from "./export-reconciler.ts";
import { ImportPortAllocator } from "./import-ports.ts";
import { ImportReconciler } from "./import-reconciler.ts";
import { KubeApi } from "./kube-api.ts";
import { LeaderElector } from "./leader-election.ts";
import { LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY, MCS_GROUP, MCS_VERSION } from "./mcs.ts";
import { ResilientInformer } from "./resilient-informer.ts";

export interface FederationControllerOptions {
  cluster: string;
  kubeConfig: k8s.KubeConfig;
  /** A started exchange for this cluster. */
  exchange: Exchange;
  /** Where peers reach this cluster's exports. */
  gateway: EndpointAddress;
  /** Where this cluster's workloads reach its gateway's import listeners. */
  gatewayImportAddress: string;
  importPorts?: { first: number; last: number };
  /** Run as one of several replicas: only the holder of this Lease writes; the others keep their caches warm. */
  leaderElection?: ControllerLeaderElection;
  logger?: Logger;
}

export interface ControllerLeaderElection {
  /** Where the Lease lives; the namespace must exist. */
  namespace: string;
  leaseName: string;
  /** Unique per replica, e.g. the pod name. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

const keyOf = (o: k8s.KubernetesObject) => `${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`;

/**
 * One cluster's federation controller: ServiceExports out to the bus, merged
 * exports in as ServiceImports, derived Services and EndpointSlices. Acts only
 * after its caches have synced and, with leader election, only while it leads.
 */
export class FederationController {
  private readonly o: FederationControllerOptions;
  private readonly log: Logger;
  private readonly serviceExports: ResilientInformer<ServiceExportObject>;
  private readonly services: ResilientInformer<k8s.V1Service>;
  private readonly endpointSlices: ResilientInformer<k8s.V1EndpointSlice>;
  private readonly derivedSlices: ResilientInformer<k8s.V1EndpointSlice>;
  private readonly exportQueue: WorkQueue;
  private readonly importQueue: WorkQueue;
  private readonly ports: ImportPortAllocator;
  private readonly api: KubeApi;
  private readonly elector: LeaderElector | undefined;
  private readonly stopWatching = new AbortController();
  private watching: Promise<void> | undefined;

  constructor(options: FederationControllerOptions) {
    this.o = options;
    this.log = (options.logger ?? silentLogger).child({ component: "controller", cluster: options.cluster });
    const kc = options.kubeConfig;
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    const custom = kc.makeApiClient(k8s.CustomObjectsApi);
    const election = options.leaderElection;
    this.elector = election
      ? new LeaderElector({
          kubeConfig: kc,
          namespace: election.namespace,
          name: election.leaseName,
          identity: election.identity,
          ...(election.leaseDurationMs !== undefined ? { leaseDurationMs: election.leaseDurationMs } : {}),
          ...(election.renewDeadlineMs !== undefined ? { renewDeadlineMs: election.renewDeadlineMs } : {}),
          ...(election.retryPeriodMs !== undefined ? { retryPeriodMs: election.retryPeriodMs } : {}),
          logger: this.log,
          onStartedLeading: () => this.lead(),
          onStoppedLeading: () => this.follow(),
        })
      : undefined;
    const elector = this.elector;
    // The fence: a reconcile still in flight when the term ends fails its next write instead of making it.
    const api = new KubeApi({ kubeConfig: kc, ...(elector ? { beforeWrite: () => elector.assertLeader() } : {}) });
    this.api = api;
    this.ports = new ImportPortAllocator(options.importPorts ?? { first: 20_000, last: 29_999 });

    const exportKey = (o: k8s.KubernetesObject) => this.exportQueue.add(keyOf(o));
    this.serviceExports = new ResilientInformer<ServiceExportObject>({
      kubeConfig: kc,
      path: `/apis/${MCS_GROUP}/${MCS_VERSION}/serviceexports`,
      list: async () => (await custom.listClusterCustomObject({ group: MCS_GROUP, version: MCS_VERSION, plural: "serviceexports" })) as k8s.KubernetesListObject<ServiceExportObject>,
      onEvent: exportKey,
      logger: this.log,
    });
    this.services = new ResilientInformer<k8s.V1Service>({
      kubeConfig: kc,
      path: "/api/v1/services",
      list: () => core.listServiceForAllNamespaces(),
      onEvent: (svc) => {
        exportKey(svc);
        const importName = svc.metadata?.labels?.[LABEL_SERVICE_NAME];
        if (importName) this.importQueue.add(`${svc.metadata?.namespace}/${importName}`);
      },
      logger: this.log,
    });
    this.endpointSlices = new ResilientInformer<k8s.V1EndpointSlice>({
      kubeConfig: kc,
      path: "/apis/discovery.k8s.io/v1/endpointslices",
      list: () => discovery.listEndpointSliceForAllNamespaces(),
      onEvent: (slice) => {
        const service = slice.metadata?.labels?.["kubernetes.io/service-name"];
        if (service && slice.metadata?.labels?.[LABEL_MANAGED_BY] !== MANAGED_BY) this.exportQueue.add(`${slice.metadata?.namespace}/${service}`);
      },
      logger: this.log,
    });
    const derivedSelector = `${LABEL_MANAGED_BY}=${MANAGED_BY}`;
    this.derivedSlices = new ResilientInformer<k8s.V1EndpointSlice>({
      kubeConfig: kc,
      path: "/apis/discovery.k8s.io/v1/endpointslices",
      labelSelector: derivedSelector,
      list: () => discovery.listEndpointSliceForAllNamespaces({ labelSelector: derivedSelector }),
      onEvent: (slice) => {
        const name = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
        if (name) this.importQueue.add(`${slice.metadata?.namespace}/${name}`);
      },
      logger: this.log,
    });

    const exportReconciler = new ExportReconciler({
      cluster: options.cluster,
      exchange: options.exchange,
      api,
      gateway: options.gateway,
      serviceExports: this.serviceExports,
      services: this.services,
      endpointSlices: this.endpointSlices,
    });
    const importReconciler = new ImportReconciler({
      exchange: options.exchange,
      api,
      gatewayImportAddress: options.gatewayImportAddress,
      ports: this.ports,
      services: this.services,
      derivedSlices: this.derivedSlices,
    });
    this.exportQueue = new WorkQueue({ reconcile: (k) => exportReconciler.reconcile(k), logger: this.log.child({ queue: "export" }), paused: true });
    // One worker: import port assignment must not race.
    this.importQueue = new WorkQueue({ reconcile: (k) => importReconciler.reconcile(k), workers: 1, logger: this.log.child({ queue: "import" }), paused: true });
  }

  async start(): Promise<void> {
    await Promise.all([this.serviceExports.start(), this.services.start(), this.endpointSlices.start(), this.derivedSlices.start()]);
    if (this.elector) this.elector.start();
    else this.lead();
    const changes = this.o.exchange.watchServices({ signal: this.stopWatching.signal });
    this.watching = (async () => {
      for await (const change of changes) {
        this.importQueue.add(change.key);
        // Conflicts are judged across the ClusterSet: a peer's change can flip our export's condition.
        const [namespace, name] = change.key.split("/") as [string, string];
        if (this.serviceExports.get(name, namespace)) this.exportQueue.add(change.key);
      }
    })();
  }

  /**
   * Starts writing, with every cache synced: at start, or when this replica
   * becomes leader. Level-triggered: every key is reconciled again, since the
   * previous leader may have left anything half done.
   */
  private lead(): void {
    // Port assignments are whatever the derived slices say now; the previous leader may have made new ones.
    this.ports.release("");
    for (const slice of this.derivedSlices.list()) {
      const name = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
      for (const p of slice.ports ?? []) if (name && p.name && p.port) this.ports.seed(`${slice.metadata?.namespace}/${name}/${p.name}`, p.port);
    }
    for (const se of this.serviceExports.list()) this.exportQueue.add(keyOf(se));
    // Orphan sweep: imports whose service is no longer exported anywhere are cleaned up on the first pass.
    for (const slice of this.derivedSlices.list()) {
      const name = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
      if (name) this.importQueue.add(`${slice.metadata?.namespace}/${name}`);
    }
    for (const service of this.o.exchange.services()) this.importQueue.add(service.key);
    // Informer events queued keys while the caches filled (or while following); only now do they run.
    this.exportQueue.resume();
    this.importQueue.resume();
  }

  /** Stops starting reconciles at once; those in flight are refused by the KubeApi fence. */
  private follow(): void {
    this.exportQueue.pause();
    this.importQueue.pause();
  }

  /** Whether this replica writes now: always without leader election, else while its term lasts. */
  isLeader(): boolean {
    return this.elector?.isLeader() ?? true;
  }

  /** Kubernetes writes this replica has sent, and those refused because its term had ended. */
  get kubeWrites(): { sent: number; refused: number } {
    return this.api.writes;
  }

  /** Resolves when both queues have drained (for tests and orderly shutdown); a follower's paused queues only drain once it leads. */
  async idle(): Promise<void> {
    await Promise.all([this.exportQueue.idle(), this.importQueue.idle()]);
  }

  async stop(): Promise<void> {
    this.stopWatching.abort();
    await this.watching;
    await Promise.all([this.exportQueue.shutDown(), this.importQueue.shutDown()]);
    // Only now, with no reconcile in flight, is the lease handed over.
    await this.elector?.stop();
    await Promise.all([this.serviceExports.stop(), this.services.stop(), this.endpointSlices.stop(), this.derivedSlices.stop()]);
  }
}
