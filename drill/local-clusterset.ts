import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { CONTROLLER_V8_FLAGS, GATEWAY_V8_FLAGS } from "../cli/v8-flags.ts";
import { silentLogger, type Logger } from "../common/index.ts";
import {
  DEFAULT_BUCKETS,
  MCS_GROUP,
  MCS_VERSION,
  POLICY_GROUP,
  REVOCATIONS_KEY,
  POLICY_PLURAL,
  POLICY_VERSION,
  connectBus,
  connectOptionsFor,
  createBusAuthority,
  derivedServiceName,
  mintAdminCredentials,
  mintClusterCredentials,
  serverAuthConfig,
  type BusAuthority,
  type ControllerConfigInput,
  type ServicePolicySpec,
} from "../federation/index.ts";
import { xdsNames, type BootstrapInput } from "../gateway/index.ts";
import { RootCa, revocationsRecord, type Certificate } from "../trust/index.ts";
import { ManagedProcess, freePorts, privateHost, scratchDir, startClusters, startNats, waitFor, type KubeCluster, type NatsEnv } from "../test/env/index.ts";
import { EchoBackend } from "../test/support/gateway-harness.ts";
import { HttpBackend } from "../test/support/l7-harness.ts";

/**
 * A ClusterSet on one machine, built from real parts: one NATS (JWT auth, the
 * fedgate buckets), and per simulated cluster a kube-apiserver + etcd (with
 * the CRDs), a `fedgate controller` process, a `fedgate gateway` process and
 * echo workloads. The PKI is trust/'s: a shared root, an intermediate per
 * cluster, controller and gateway leaves. Workloads and gateways listen on
 * test/env's PRIVATE_HOST, in a network namespace of the drill's own, since
 * EndpointSlices cannot point at loopback.
 */

export const DRILL_NAMESPACE = "demo";
export const DRILL_TRUST_DOMAIN = "fedgate.drill";
const CLUSTER_SET = "drill";
const BIN = new URL("../bin/fedgate.js", import.meta.url).pathname;
/** Each cluster's gateway gets its own slice of the import port range: all gateways share one host. */
const IMPORT_PORTS_PER_CLUSTER = 100;
const FIRST_IMPORT_PORT = 21_000;
const READY_TIMEOUT_MS = 120_000;
/** Where replicas keep their Lease: a namespace every apiserver creates itself. */
export const LEADER_ELECTION_NAMESPACE = "kube-system";
export const LEADER_ELECTION_LEASE = "fedgate-controller";
/** Short terms, so a drill sees a hand-over within seconds. */
const LEADER_ELECTION_TIMING = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };

export interface LocalClusterSetOptions {
  clusters: number;
  /** Lease TTL on the bus; short, so a dead controller is noticed within a drill. */
  leaseTtlMs?: number;
  /** Controller processes per cluster; more than one run with leader election, as the Deployment does. */
  controllerReplicas?: number;
  logger?: Logger;
}

/** An echo replica: TCP (greets with its name, then echoes) or HTTP (answers with `x-backend: <name>`). */
interface Workload {
  readonly port: number;
  listen(): Promise<void>;
  kill(): Promise<void>;
}

interface Member {
  name: string;
  kube: KubeCluster;
  dir: string;
  /** The cluster's intermediate CA certificate: what a revocation list names. */
  intermediate: Certificate;
  /** One per controller replica; the gateway is bootstrapped against the first. */
  xdsPorts: number[];
  adminPort: number;
  exportPort: number;
  controllers: ManagedProcess[];
  gateway: ManagedProcess;
  workloads: Map<string, Workload[]>;
}

export class LocalClusterSet {
  readonly host = privateHost();
  readonly dir: string;
  private readonly members = new Map<string, Member>();
  private readonly log: Logger;
  private nats: NatsEnv | undefined;
  private kubes: KubeCluster[] = [];
  private root: RootCa | undefined;
  private authority: BusAuthority | undefined;
  /** The last revocation list's number: each new list must be newer, or the exchanges refuse it as stale. */
  private crlNumber = 0;

  private constructor(options: { dir: string; logger: Logger }) {
    this.dir = options.dir;
    this.log = options.logger;
  }

  /** Brings everything up; on any failure, tears down what started and rethrows. */
  static async start(options: LocalClusterSetOptions): Promise<LocalClusterSet> {
    const set = new LocalClusterSet({ dir: scratchDir("clusterset"), logger: (options.logger ?? silentLogger).child({ component: "local-clusterset" }) });
    try {
      await set.bringUp(options);
      return set;
    } catch (err) {
      await set.stop();
      throw err;
    }
  }

  get clusterNames(): string[] {
    return [...this.members.keys()];
  }

  get trustRoot(): RootCa {
    if (!this.root) throw new Error("the ClusterSet is not started");
    return this.root;
  }

  private async bringUp(options: LocalClusterSetOptions): Promise<void> {
    const authority = await createBusAuthority({ clusterSet: CLUSTER_SET });
    this.authority = authority;
    this.log.info("starting NATS and the kube-apiservers", { clusters: options.clusters });
    const [natsStart, kubesStart] = await Promise.allSettled([startNats({ serverConfig: serverAuthConfig(authority) }), startClusters(options.clusters)]);
    // Keep whichever started, so a failed bring-up still tears it down.
    if (natsStart.status === "fulfilled") this.nats = natsStart.value;
    if (kubesStart.status === "fulfilled") this.kubes = kubesStart.value;
    if (natsStart.status === "rejected") throw natsStart.reason;
    if (kubesStart.status === "rejected") throw kubesStart.reason;
    const nats = natsStart.value;
    const kubes = kubesStart.value;
    const admin = await connectBus({ servers: nats.urls, name: "fedgate-drill-admin", ...connectOptionsFor(await mintAdminCredentials(authority)) });
    await admin.ensureBuckets({ buckets: DEFAULT_BUCKETS, replicas: 1, history: 1 });
    await admin.close();

    const root = await RootCa.create({ trustDomain: DRILL_TRUST_DOMAIN });
    this.root = root;
    for (const [index, kube] of kubes.entries()) {
      const name = kube.name;
      const dir = join(this.dir, name);
      const replicas = options.controllerReplicas ?? 1;
      const [adminPort, exportPort, ...xdsPorts] = (await freePorts(2 + replicas)) as [number, number, ...number[]];
      const first = FIRST_IMPORT_PORT + index * IMPORT_PORTS_PER_CLUSTER;
      const intermediate = await root.issueIntermediate({ cluster: name });
      const controllerLeaf = await intermediate.issueLeaf({ spiffeId: `spiffe://${DRILL_TRUST_DOMAIN}/cluster/${name}/controller` });
      const gatewayLeaf = await intermediate.issueLeaf({ spiffeId: `spiffe://${DRILL_TRUST_DOMAIN}/cluster/${name}/gateway` });
      const creds = await mintClusterCredentials(authority, name);
      const files = writeFiles(dir, {
        "bundle.pem": root.certificate.pem,
        "controller.pem": controllerLeaf.chainPem,
        "controller.key": controllerLeaf.privateKeyPem ?? "",
        "gateway.pem": gatewayLeaf.chainPem,
        "gateway.key": gatewayLeaf.privateKeyPem ?? "",
        "cluster.creds": creds.creds,
      });
      // Shared by the replicas; each adds its own xDS port and leader-election identity.
      const config: Omit<ControllerConfigInput, "xds"> = {
        cluster: name,
        clusterSet: CLUSTER_SET,
        kubeconfig: kube.kubeconfigPath,
        locality: { region: "region-1", zone: `zone-${name}`, network: "net-1" },
        nats: { servers: nats.urls, credsFile: files["cluster.creds"] },
        trust: {
          trustDomain: DRILL_TRUST_DOMAIN,
          bundleFile: files["bundle.pem"],
          controllerCertFile: files["controller.pem"],
          controllerKeyFile: files["controller.key"],
          gatewayCertFile: files["gateway.pem"],
          gatewayKeyFile: files["gateway.key"],
        },
        gateway: { exportAddress: { host: this.host, port: exportPort }, importAddress: this.host, importPorts: { first, last: first + IMPORT_PORTS_PER_CLUSTER - 1 } },
        ...(options.leaseTtlMs !== undefined ? { leaseTtlMs: options.leaseTtlMs } : {}),
        log: { level: "info", format: "json" },
      };
      const bootstrap: BootstrapInput = {
        node: { id: `gw-${name}`, cluster: name },
        xds_servers: [{ server_uri: `127.0.0.1:${xdsPorts[0]}` }],
        admin: { address: "127.0.0.1", port: adminPort },
        fedgate: {
          bind_address: this.host,
          port_overrides: { [String(xdsNames.EXPORT_LISTENER_PORT)]: exportPort },
          drain_timeout_ms: 2_000,
          reconnect_initial_ms: 100,
          reconnect_max_ms: 1_000,
        },
      };
      const replicaConfigs: Record<string, string> = {};
      for (const [i, port] of xdsPorts.entries()) {
        const replica: ControllerConfigInput = {
          ...config,
          xds: { host: "127.0.0.1", port },
          ...(replicas > 1 ? { leaderElection: { namespace: LEADER_ELECTION_NAMESPACE, leaseName: LEADER_ELECTION_LEASE, identity: controllerIdentity(name, i), ...LEADER_ELECTION_TIMING } } : {}),
        };
        replicaConfigs[`controller-${i}.json`] = JSON.stringify(replica, null, 2);
      }
      writeFiles(dir, { ...replicaConfigs, "bootstrap.json": JSON.stringify(bootstrap, null, 2) });
      await kube.kubeConfig.makeApiClient(k8s.CoreV1Api).createNamespace({ body: { metadata: { name: DRILL_NAMESPACE } } });
      const member: Member = {
        name,
        kube,
        dir,
        intermediate: intermediate.certificate,
        xdsPorts,
        adminPort,
        exportPort,
        controllers: xdsPorts.map((_, i) => this.spawn(name, dir, "controller", i)),
        gateway: this.spawn(name, dir, "gateway"),
        workloads: new Map(),
      };
      this.members.set(name, member);
    }
    for (const m of this.members.values()) {
      for (const [i, port] of m.xdsPorts.entries()) {
        await waitFor(`${controllerIdentity(m.name, i)}'s xDS server`, () => tcpOpen("127.0.0.1", port), { timeoutMs: READY_TIMEOUT_MS, intervalMs: 200, process: m.controllers[i] });
      }
      await waitFor(`${m.name}'s gateway admin`, () => tcpOpen("127.0.0.1", m.adminPort), { timeoutMs: READY_TIMEOUT_MS, intervalMs: 200, process: m.gateway });
    }
    this.log.info("ClusterSet up", { clusters: this.clusterNames, host: this.host, dir: this.dir });
  }

  private spawn(name: string, dir: string, role: "controller" | "gateway", replica = 0): ManagedProcess {
    const label = role === "controller" ? `controller-${replica}` : "gateway";
    const args = role === "controller" ? ["controller", "--config", join(dir, `${label}.json`)] : ["gateway", "--bootstrap", join(dir, "bootstrap.json")];
    return ManagedProcess.start({ name: `fedgate ${label}[${name}]`, command: process.execPath, args: [...(role === "controller" ? CONTROLLER_V8_FLAGS : GATEWAY_V8_FLAGS), BIN, ...args], logFile: join(dir, `${label}.log`) });
  }

  member(name: string): Member {
    const m = this.members.get(name);
    if (!m) throw new RangeError(`no cluster ${name} in the local ClusterSet`);
    return m;
  }

  /**
   * `replicas` echo servers naming themselves `<cluster>/<service>-<i>`, as a
   * Service and one EndpointSlice per replica. The port is named `tcp` or
   * `http`; the name is what makes the gateway treat it as L4 or L7.
   */
  async deployEcho(cluster: string, service: string, options: { replicas: number; port: number; protocol?: "tcp" | "http" }): Promise<void> {
    const m = this.member(cluster);
    const protocol = options.protocol ?? "tcp";
    const backends: Workload[] = await Promise.all(
      Array.from({ length: options.replicas }, (_, i) => {
        const id = `${cluster}/${service}-${i + 1}`;
        return protocol === "http" ? HttpBackend.start(id, this.host) : EchoBackend.start(id, 0, this.host);
      }),
    );
    m.workloads.set(service, backends);
    const kc = m.kube.kubeConfig;
    await kc.makeApiClient(k8s.CoreV1Api).createNamespacedService({
      namespace: DRILL_NAMESPACE,
      body: { metadata: { name: service }, spec: { ports: [{ name: protocol, port: options.port, protocol: "TCP" }] } },
    });
    const discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    for (const [i, b] of backends.entries()) {
      await discovery.createNamespacedEndpointSlice({
        namespace: DRILL_NAMESPACE,
        body: {
          metadata: { name: `${service}-${i + 1}`, labels: { "kubernetes.io/service-name": service } },
          addressType: "IPv4",
          endpoints: [{ addresses: [this.host], zone: `zone-${cluster}`, conditions: { ready: true } }],
          ports: [{ name: protocol, port: b.port, protocol: "TCP" }],
        },
      });
    }
  }

  async exportService(cluster: string, service: string): Promise<void> {
    await this.member(cluster)
      .kube.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
      .createNamespacedCustomObject({
        group: MCS_GROUP,
        version: MCS_VERSION,
        namespace: DRILL_NAMESPACE,
        plural: "serviceexports",
        body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name: service } },
      });
  }

  /** The ServiceFederationPolicy for `service` as seen from `cluster`. */
  async setPolicy(cluster: string, service: string, spec: ServicePolicySpec): Promise<void> {
    await this.member(cluster)
      .kube.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
      .createNamespacedCustomObject({
        group: POLICY_GROUP,
        version: POLICY_VERSION,
        namespace: DRILL_NAMESPACE,
        plural: POLICY_PLURAL,
        body: { apiVersion: `${POLICY_GROUP}/${POLICY_VERSION}`, kind: "ServiceFederationPolicy", metadata: { name: service }, spec },
      });
  }

  /** The gateway port the cluster's derived EndpointSlice for `service` points at, once it exists. */
  async importPort(cluster: string, service: string, timeoutMs = READY_TIMEOUT_MS): Promise<number> {
    const m = this.member(cluster);
    const discovery = m.kube.kubeConfig.makeApiClient(k8s.DiscoveryV1Api);
    return waitFor(
      `${cluster}'s derived EndpointSlice for ${service}`,
      async () => {
        const slices = await discovery.listNamespacedEndpointSlice({ namespace: DRILL_NAMESPACE, labelSelector: `kubernetes.io/service-name=${derivedServiceName(service)}` });
        return slices.items.flatMap((s) => s.ports ?? []).find((p) => p.port !== undefined)?.port;
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  exportPort(cluster: string): number {
    return this.member(cluster).exportPort;
  }

  /** What the gateway's admin endpoint reports (`/listeners`: name → bound address). */
  async gatewayListeners(cluster: string): Promise<Record<string, { host: string; port: number }>> {
    const res = await fetch(`http://127.0.0.1:${this.member(cluster).adminPort}/listeners`);
    return (await res.json()) as Record<string, { host: string; port: number }>;
  }

  /** The gateway's running config as its admin endpoint reports it (`/config`). */
  async gatewayConfig(cluster: string): Promise<unknown> {
    return (await fetch(`http://127.0.0.1:${this.member(cluster).adminPort}/config`)).json();
  }

  async gatewayMetrics(cluster: string): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.member(cluster).adminPort}/metrics`)).text();
  }

  /** Every echo replica of `service` in `cluster` stops and resets its connections (dead pods; the slices stay, as with no kubelet). */
  async killEndpoints(cluster: string, service: string): Promise<void> {
    for (const b of this.member(cluster).workloads.get(service) ?? []) await b.kill();
  }

  /** The replicas listen again on their old ports. */
  async restoreEndpoints(cluster: string, service: string): Promise<void> {
    for (const b of this.member(cluster).workloads.get(service) ?? []) await b.listen();
  }

  /** SIGKILLs the cluster's gateway process. */
  async killGateway(cluster: string): Promise<void> {
    await this.member(cluster).gateway.kill();
  }

  /** Starts the cluster's gateway again with the same bootstrap (same ports). */
  async restartGateway(cluster: string): Promise<void> {
    const m = this.member(cluster);
    m.gateway = this.spawn(cluster, m.dir, "gateway");
    await waitFor(`${cluster}'s gateway admin`, () => tcpOpen("127.0.0.1", m.adminPort), { timeoutMs: READY_TIMEOUT_MS, intervalMs: 100, process: m.gateway });
  }

  /**
   * Revokes `clusters` the way an operator does: a revocation list signed by
   * the ClusterSet root, put on the bus trust bucket with the admin
   * credential. The exchanges install it, drop the clusters' records, and
   * hand it to their gateways over SDS. An empty list lifts every revocation.
   */
  async revokeClusters(clusters: string[]): Promise<void> {
    if (!this.nats || !this.authority) throw new Error("the ClusterSet is not started");
    this.crlNumber += 1;
    const crl = await this.trustRoot.issueRevocationList({ intermediates: clusters.map((c) => this.member(c).intermediate), crlNumber: this.crlNumber });
    const admin = await connectBus({ servers: this.nats.urls, name: "fedgate-drill-admin", ...connectOptionsFor(await mintAdminCredentials(this.authority)) });
    try {
      const trust = await admin.bucket(DEFAULT_BUCKETS.trust);
      await trust.put(REVOCATIONS_KEY, new TextEncoder().encode(revocationsRecord(DRILL_TRUST_DOMAIN, [crl])));
    } finally {
      await admin.close();
    }
  }

  /** The clusters `cluster`'s ServiceImport for `service` lists (its `status.clusters`), sorted. */
  async importedFrom(cluster: string, service: string): Promise<string[]> {
    const serviceImport = (await this.member(cluster)
      .kube.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
      .getNamespacedCustomObject({ group: MCS_GROUP, version: MCS_VERSION, namespace: DRILL_NAMESPACE, plural: "serviceimports", name: service })) as { status?: { clusters?: { cluster?: string }[] } };
    return (serviceImport.status?.clusters ?? []).flatMap((c) => (c.cluster ? [c.cluster] : [])).sort();
  }

  /** Who holds the controllers' Lease in `cluster` (with more than one replica), as the apiserver has it. */
  async leaseHolder(cluster: string): Promise<string | undefined> {
    const lease = await this.member(cluster)
      .kube.kubeConfig.makeApiClient(k8s.CoordinationV1Api)
      .readNamespacedLease({ namespace: LEADER_ELECTION_NAMESPACE, name: LEADER_ELECTION_LEASE });
    return lease.spec?.holderIdentity;
  }

  /** SIGTERM to one controller replica (it drains and hands the Lease over); resolves with its exit code. */
  async stopController(cluster: string, replica: number): Promise<number | null> {
    const p = this.member(cluster).controllers[replica];
    if (!p) throw new RangeError(`${cluster} has no controller replica ${replica}`);
    await p.stop();
    return p.exited;
  }

  /** Process ids of every fedgate process still running (for teardown checks). */
  fedgatePids(): number[] {
    return [...this.members.values()].flatMap((m) => [...m.controllers, m.gateway].filter((p) => p.running).map((p) => p.pid));
  }

  /** Controllers and gateways get SIGTERM (they drain), then the servers stop; nothing is left running. */
  async stop(): Promise<void> {
    await Promise.all([...this.members.values()].map((m) => Promise.all([m.gateway.stop(), ...m.controllers.map((c) => c.stop())])));
    for (const m of this.members.values()) for (const backends of m.workloads.values()) for (const b of backends) await b.kill();
    await Promise.all(this.kubes.map((k) => k.stop()));
    await this.nats?.stop();
    this.members.clear();
    this.kubes = [];
    this.nats = undefined;
    this.authority = undefined;
  }
}

function writeFiles<K extends string>(dir: string, files: Record<K, string>): Record<K, string> {
  mkdirSync(dir, { recursive: true });
  const paths = {} as Record<K, string>;
  for (const [name, text] of Object.entries(files) as [K, string][]) {
    paths[name] = join(dir, name);
    writeFileSync(paths[name], text, { mode: 0o600 });
  }
  return paths;
}

/** Resolves true once something accepts TCP connections on host:port, else undefined (for `waitFor`). */
function tcpOpen(host: string, port: number): Promise<true | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(undefined));
  });
}

/** A controller replica's leader-election identity, as a pod name would be. */
export function controllerIdentity(cluster: string, replica: number): string {
  return `fedgate-controller-${cluster}-${replica}`;
}
