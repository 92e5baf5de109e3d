import * as k8s from "@kubernetes/client-node";
import { WorkQueue, silentLogger, type Logger } from "../../common/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import type { EndpointAddress } from "../exchange/records.ts";
import type { ImportPort, LocalEndpoint, ServicePolicyInput } from "../../gateway/index.ts";
import { ExportReconciler, type ServiceExportObject } from "./export-reconciler.ts";
import { ImportPortAllocator } from "./import-ports.ts";
import { DERIVED_PREFIX, ImportReconciler } from "./import-reconciler.ts";
import { localEndpointsOf } from "./local-endpoints.ts";
import { EventRecorder } from "./event-recorder.ts";
import { PolicyWatcher } from "./policy-watcher.ts";
import { KubeApi } from "./kube-api.ts";
import { withKeepAlive } from "./keep-alive-kube-config.ts";
import { LeaderElector } from "./leader-election.ts";
import { APP_MANAGED_BY, LABEL_APP_MANAGED_BY, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY, MCS_GROUP, MCS_VERSION } from "./mcs.ts";
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
  /**
   * Namespace sameness: an import lands only in a namespace that already
   * exists here (default), or, when true, fedgate creates the namespace.
   */
  createNamespaces?: boolean;
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

const IMPORT_WORKERS = 4;

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
  private readonly serviceImports: ResilientInformer<k8s.KubernetesObject>;
  private readonly services: ResilientInformer<k8s.V1Service>;
  private readonly namespaces: ResilientInformer<k8s.V1Namespace>;
  private readonly endpointSlices: ResilientInformer<k8s.V1EndpointSlice>;
  private readonly derivedSlices: ResilientInformer<k8s.V1EndpointSlice>;
  private readonly exportQueue: WorkQueue;
  private readonly importQueue: WorkQueue;
  private readonly ports: ImportPortAllocator;
  private readonly policyWatcher: PolicyWatcher;
  private readonly api: KubeApi;
  private readonly elector: LeaderElector | undefined;
  private readonly stopWatching = new AbortController();
  private readonly dataplaneListeners = new Set<() => void>();
  private watching: Promise<void> | undefined;

  constructor(options: FederationControllerOptions) {
    this.o = options;
    this.log = (options.logger ?? silentLogger).child({ component: "controller", cluster: options.cluster });
    const kc = withKeepAlive(options.kubeConfig);
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
    // The fence: a reconcile still in flight when the term ends fails its next write, to the apiserver or the bus, instead of making it.
    const fence = elector ? () => elector.assertLeader() : undefined;
    const api = new KubeApi({ kubeConfig: kc, ...(fence ? { beforeWrite: fence } : {}) });
    this.api = api;
    this.ports = new ImportPortAllocator(options.importPorts ?? { first: 20_000, last: 29_999 });
    const events = new EventRecorder({ kubeConfig: kc, instance: `fedgate-${options.cluster}`, logger: this.log });
    this.policyWatcher = new PolicyWatcher({
      kubeConfig: kc,
      events,
      api,
      logger: this.log,
      // Consumers travel in the export record; the rest shapes this cluster's data plane.
      onChange: (key) => {
        const [namespace, name] = key.split("/") as [string, string];
        if (this.serviceExports.get(name, namespace)) this.exportQueue.add(key);
        this.notifyDataplane();
      },
    });

    const exportKey = (o: k8s.KubernetesObject) => {
      this.exportQueue.add(keyOf(o));
      // Exports, their Services and their slices are what this cluster's data plane serves locally.
      this.notifyDataplane();
    };
    // A Service or slice matters to the export side only while a ServiceExport names it; otherwise
    // every derived Service the import side writes would run an export pass (and a bus withdrawal).
    // The ServiceExport's own events cover its creation and deletion.
    const exportedKey = (namespace: string | undefined, name: string) => {
      if (this.serviceExports.get(name, namespace)) exportKey({ metadata: { namespace, name } });
    };
    this.serviceExports = new ResilientInformer<ServiceExportObject>({
      kubeConfig: kc,
      path: `/apis/${MCS_GROUP}/${MCS_VERSION}/serviceexports`,
      list: async () => (await custom.listClusterCustomObject({ group: MCS_GROUP, version: MCS_VERSION, plural: "serviceexports" })) as k8s.KubernetesListObject<ServiceExportObject>,
      onEvent: exportKey,
      logger: this.log,
    });
    const importKey = (o: k8s.KubernetesObject) => this.importQueue.add(keyOf(o));
    this.serviceImports = new ResilientInformer<k8s.KubernetesObject>({
      kubeConfig: kc,
      path: `/apis/${MCS_GROUP}/${MCS_VERSION}/serviceimports`,
      list: async () => (await custom.listClusterCustomObject({ group: MCS_GROUP, version: MCS_VERSION, plural: "serviceimports" })) as k8s.KubernetesListObject<k8s.KubernetesObject>,
      // A ServiceImport someone deleted or edited is put back as the ClusterSet says it should be.
      onEvent: importKey,
      logger: this.log,
    });
    this.namespaces = new ResilientInformer<k8s.V1Namespace>({
      kubeConfig: kc,
      path: "/api/v1/namespaces",
      list: () => core.listNamespace(),
      // Imports waiting for their namespace go ahead once it exists.
      onEvent: (ns) => {
        for (const s of this.o.exchange.services()) if (s.namespace === ns.metadata?.name) this.importQueue.add(s.key);
      },
      logger: this.log,
    });
    this.services = new ResilientInformer<k8s.V1Service>({
      kubeConfig: kc,
      path: "/api/v1/services",
      list: () => core.listServiceForAllNamespaces(),
      onEvent: (svc) => {
        exportedKey(svc.metadata?.namespace, svc.metadata?.name ?? "");
        const importName = svc.metadata?.labels?.[LABEL_SERVICE_NAME];
        if (importName) {
          this.importQueue.add(`${svc.metadata?.namespace}/${importName}`);
          // A derived Service's target ports are the import ports the gateway listens on (importPorts()).
          this.notifyDataplane();
        }
        // A foreign Service squatting on a derived name blocks its import until it goes.
        else if (svc.metadata?.name?.startsWith(DERIVED_PREFIX)) this.importQueue.add(`${svc.metadata.namespace}/${svc.metadata.name.slice(DERIVED_PREFIX.length)}`);
      },
      logger: this.log,
    });
    // The cluster's own slices only: the derived ones are in derivedSlices, and caching them twice cost memory.
    const ownSelector = `${LABEL_MANAGED_BY}!=${MANAGED_BY}`;
    this.endpointSlices = new ResilientInformer<k8s.V1EndpointSlice>({
      kubeConfig: kc,
      path: "/apis/discovery.k8s.io/v1/endpointslices",
      labelSelector: ownSelector,
      list: () => discovery.listEndpointSliceForAllNamespaces({ labelSelector: ownSelector }),
      onEvent: (slice) => {
        const service = slice.metadata?.labels?.["kubernetes.io/service-name"];
        if (service) exportedKey(slice.metadata?.namespace, service);
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
      events,
      policyFor: (namespace, name) => this.policyWatcher.policyFor(namespace, name),
      serviceExports: this.serviceExports,
      services: this.services,
      endpointSlices: this.endpointSlices,
      ...(fence ? { beforeBusWrite: fence } : {}),
    });
    const importReconciler = new ImportReconciler({
      exchange: options.exchange,
      api,
      gatewayImportAddress: options.gatewayImportAddress,
      ports: this.ports,
      events,
      serviceImports: this.serviceImports,
      namespaces: this.namespaces,
      createNamespaces: options.createNamespaces ?? false,
      services: this.services,
      derivedSlices: this.derivedSlices,
    });
    this.exportQueue = new WorkQueue({ reconcile: (k) => exportReconciler.reconcile(k), logger: this.log.child({ queue: "export" }), paused: true });
    // Imports wait on the apiserver, not the CPU, so several run at once; port assignment is synchronous, so they cannot race for a port.
    this.importQueue = new WorkQueue({ reconcile: (k) => importReconciler.reconcile(k), workers: IMPORT_WORKERS, logger: this.log.child({ queue: "import" }), paused: true });
  }

  async start(): Promise<void> {
    await Promise.all([...this.informers().map((i) => i.start()), this.policyWatcher.start({ report: !this.elector })]);
    if (this.elector) this.elector.start();
    else this.lead();
    const changes = this.o.exchange.watchServices({ signal: this.stopWatching.signal });
    this.watching = (async () => {
      for await (const change of changes) {
        this.importQueue.add(change.key);
        this.notifyDataplane();
        // Conflicts are judged across the ClusterSet: a peer's change can flip our export's condition.
        const [namespace, name] = change.key.split("/") as [string, string];
        if (this.serviceExports.get(name, namespace)) this.exportQueue.add(change.key);
      }
    })();
  }

  /** This cluster's backends of every service it exports (validly), keyed `<namespace>/<name>`, for its gateway. */
  localEndpoints(): Map<string, LocalEndpoint[]> {
    const result = new Map<string, LocalEndpoint[]>();
    for (const se of this.serviceExports.list()) {
      const { namespace = "", name = "" } = se.metadata ?? {};
      const service = this.services.get(name, namespace);
      if (!service || service.spec?.type === "ExternalName" || se.metadata?.deletionTimestamp) continue;
      const slices = this.endpointSlices.list(namespace).filter((s) => s.metadata?.labels?.["kubernetes.io/service-name"] === name);
      result.set(`${namespace}/${name}`, localEndpointsOf(service, slices));
    }
    return result;
  }

  /**
   * Where this cluster's gateway listens for each import, keyed
   * `<namespace>/<name>`: read from the derived Services (service port →
   * target port), which every replica's cache holds, so a follower's xDS
   * server serves the leader's allocation too.
   */
  importPorts(): Map<string, ImportPort[]> {
    const result = new Map<string, ImportPort[]>();
    for (const svc of this.services.list()) {
      const name = svc.metadata?.labels?.[LABEL_SERVICE_NAME];
      if (!name || svc.metadata?.labels?.[LABEL_APP_MANAGED_BY] !== APP_MANAGED_BY) continue;
      const ports = (svc.spec?.ports ?? []).flatMap((p) => (typeof p.targetPort === "number" ? [{ port: p.port, gatewayPort: p.targetPort }] : []));
      result.set(`${svc.metadata?.namespace ?? ""}/${name}`, ports);
    }
    return result;
  }

  /** The ServiceFederationPolicy in force per Service, keyed `<namespace>/<name>`. */
  policies(): Map<string, ServicePolicyInput> {
    return new Map([...this.policyWatcher.policies()].map(([key, parsed]) => [key, parsed.policy]));
  }

  /** Calls `listener` (synchronously; it should only schedule work) whenever the data plane's inputs may have changed. */
  onDataplaneChange(listener: () => void): () => void {
    this.dataplaneListeners.add(listener);
    return () => this.dataplaneListeners.delete(listener);
  }

  private notifyDataplane(): void {
    for (const listener of this.dataplaneListeners) listener();
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
    for (const si of this.serviceImports.list()) this.importQueue.add(keyOf(si));
    for (const slice of this.derivedSlices.list()) {
      const name = slice.metadata?.labels?.[LABEL_SERVICE_NAME];
      if (name) this.importQueue.add(`${slice.metadata?.namespace}/${name}`);
    }
    for (const service of this.o.exchange.services()) this.importQueue.add(service.key);
    // Informer events queued keys while the caches filled (or while following); only now do they run.
    this.exportQueue.resume();
    this.importQueue.resume();
    this.policyWatcher.setReporting(true);
  }

  /** Stops starting reconciles at once; those in flight are refused by the KubeApi fence. */
  private follow(): void {
    this.exportQueue.pause();
    this.importQueue.pause();
    this.policyWatcher.setReporting(false);
  }

  /** Whether this replica writes now: always without leader election, else while its term lasts. */
  isLeader(): boolean {
    return this.elector?.isLeader() ?? true;
  }

  /** Kubernetes writes this replica has sent, and those refused because its term had ended. */
  get kubeWrites(): { sent: number; refused: number } {
    return this.api.writes;
  }

  /** Applies not sent because the cache showed them to repeat the last apply to an unchanged object. */
  get skippedApplies(): number {
    return this.api.skippedApplies;
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
    await Promise.all([...this.informers().map((i) => i.stop()), this.policyWatcher.close()]);
  }

  /** Per informer: lists (a relist means a 410 or a first start) and restarts after failed watches. */
  informerStats(): ReturnType<ResilientInformer<k8s.KubernetesObject>["stats"]>[] {
    return this.informers().map((i) => i.stats());
  }

  private informers(): Pick<ResilientInformer<k8s.KubernetesObject>, "start" | "stop" | "stats">[] {
    return [this.serviceExports, this.serviceImports, this.namespaces, this.services, this.endpointSlices, this.derivedSlices];
  }
}
