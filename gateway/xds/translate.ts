import type { Problem } from "../../common/index.ts";
import { DEFAULT_SERVICE_POLICY, type FederationSnapshot, type LocalEndpoint, type HttpHealthCheck, type ServicePolicy, type SnapshotService } from "./input.ts";
import { localityPriorities, type LocalityPlace } from "./locality-priority.ts";
import {
  apiListenerName,
  clustersetHost,
  EXPORT_LISTENER_NAME,
  EXPORT_LISTENER_PORT,
  exportSni,
  GATEWAY_CERT_SECRET,
  importListenerName,
  inboundClusterName,
  outboundClusterName,
  routeName,
  TRUST_BUNDLE_SECRET,
} from "./naming.ts";
import type { ProtoMessage } from "./proto-registry.ts";
import { RESOURCE_KINDS, type ResourceKind } from "./type-urls.ts";

/**
 * Translation from a federation snapshot to Envoy v3 resources. Pure: the same
 * snapshot always yields the same resources, so unchanged resources hash the
 * same and are never re-pushed.
 *
 * Two flavours of data plane receive different shapes of the same intent:
 * - `gateway` (fedgate's gateway, Envoy): the export listener on 15443, import
 *   listeners, SDS secrets, per-endpoint mTLS to peer gateways;
 * - `proxyless` (gRPC with grpc-js-xds): API listeners named after the
 *   `xds:///` target, and gRFC A29 certificate-provider TLS.
 */
export type Flavour = "gateway" | "proxyless";

/** A resource another one names; checked to exist before anything is sent. */
export interface ResourceRef {
  kind: ResourceKind;
  name: string;
}

export interface TranslatedResource {
  kind: ResourceKind;
  name: string;
  message: ProtoMessage;
  refs: readonly ResourceRef[];
}

export type ResourceSet = Record<ResourceKind, Map<string, TranslatedResource>>;

export interface Translation {
  resources: ResourceSet;
  /** Input the translation had to skip (e.g. two services on one import port); reported, not fatal. */
  warnings: Problem[];
}

const ANY = "type.googleapis.com/";
const ADS_SOURCE = { ads: {}, resource_api_version: "V3" } as const;
const TLS_MATCH_KEY = "fedgate.io/tls";
const TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match";
const L7_APP_PROTOCOLS = new Set(["http", "http2", "grpc", "h2c", "kubernetes.io/h2c", "grpc-web"]);
const GRPC_APP_PROTOCOLS = new Set(["grpc", "h2c", "http2", "kubernetes.io/h2c"]);

/** What one service contributes to an import listener: its port, and its virtual host when served over HTTP. */
interface ImportPiece {
  listenPort: number;
  servicePort: number;
  service: SnapshotService;
  cluster: string;
  virtualHost: ProtoMessage | undefined;
}

/** What one service contributes to the export listener: an inbound cluster, its endpoints, an SNI chain. */
interface ExportPiece {
  cluster: TranslatedResource;
  endpoint: TranslatedResource;
  chain: ProtoMessage;
}

/**
 * Everything one service translates to for one flavour. It depends only on the
 * service's own inputs (`serviceInputKey`) and the snapshot-wide context
 * (`contextKey`), so it is reused as long as neither changes.
 */
interface ServiceTranslation {
  resources: TranslatedResource[];
  imports: ImportPiece[];
  exported: ExportPiece[];
  warnings: Problem[];
}

/** The services one import listener serves, all on the same service port. */
interface ImportEntry {
  servicePort: number;
  l7: ImportPiece[];
  l4: ImportPiece[];
}

interface PortInfo {
  port: number;
  l7: boolean;
  grpc: boolean;
}

export function emptyResourceSet(): ResourceSet {
  return Object.fromEntries(RESOURCE_KINDS.map((k) => [k, new Map()])) as ResourceSet;
}

/** Translates one snapshot from scratch. */
export function translate(snapshot: FederationSnapshot, flavour: Flavour): Translation {
  return new Translator().translate(snapshot, flavour);
}

/**
 * Incremental translation: each service's resources are kept with a key of
 * its inputs (its exports, policy, local endpoints, import ports and the views
 * of the clusters exporting it), and reused while that key and the
 * snapshot-wide context stay the same. Reused resources are the same objects,
 * so `EncodedResourceCache` finds their validated bytes by identity without
 * looking at their content. The resources that list every service (the export
 * listener, the import listeners and routes) are re-assembled from the
 * per-service pieces, and reused too when none of their pieces changed.
 * The output equals `translate`'s for every snapshot (tests compare them).
 */
export class Translator {
  private readonly memo: Record<Flavour, { context: string; services: Map<string, { key: string; out: ServiceTranslation }>; aggregates: Map<string, Aggregate> }> = {
    gateway: { context: "", services: new Map(), aggregates: new Map() },
    proxyless: { context: "", services: new Map(), aggregates: new Map() },
  };
  private readonly inputKeys = new WeakMap<FederationSnapshot, Map<SnapshotService, string>>();

  translate(snapshot: FederationSnapshot, flavour: Flavour): Translation {
    const memo = this.memo[flavour];
    const context = contextKey(snapshot);
    if (memo.context !== context) memo.services.clear();
    memo.context = context;
    const keys = this.keysOf(snapshot);
    const services = new Map<string, { key: string; out: ServiceTranslation }>();
    const parts = snapshot.services.map((service) => {
      const key = keys.get(service) ?? serviceInputKey(snapshot, service);
      const known = memo.services.get(service.key);
      const entry = known?.key === key ? known : { key, out: settle(translateService(snapshot, service, flavour), known?.out) };
      services.set(service.key, entry);
      return entry.out;
    });
    memo.services = services;
    const aggregates = new Map<string, Aggregate>();
    const reuse: Reuse = (id, pieces, build) => {
      const previous = memo.aggregates.get(id);
      const message = previous && sameParts(previous.parts, pieces) ? previous.message : build();
      aggregates.set(id, { parts: pieces, message });
      return message;
    };
    const translation = assemble(snapshot, flavour, parts, reuse);
    memo.aggregates = aggregates;
    return translation;
  }

  /** Input keys are computed once per snapshot, for both flavours. */
  private keysOf(snapshot: FederationSnapshot): Map<SnapshotService, string> {
    let keys = this.inputKeys.get(snapshot);
    if (!keys) {
      keys = new Map(snapshot.services.map((s) => [s, serviceInputKey(snapshot, s)]));
      this.inputKeys.set(snapshot, keys);
    }
    return keys;
  }
}

interface Aggregate {
  parts: readonly unknown[];
  message: ProtoMessage;
}

/** The previous message of aggregate `id` when its parts are the same values (objects by identity), else a new one. */
type Reuse = (id: string, parts: readonly unknown[], build: () => ProtoMessage) => ProtoMessage;

function sameParts(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * A service translated again keeps the objects of every piece that came out
 * equal (a peer's ready count changes its ClusterLoadAssignment, not its
 * cluster or its export chain), so downstream caches still find them by identity.
 */
function settle(next: ServiceTranslation, previous: ServiceTranslation | undefined): ServiceTranslation {
  if (!previous) return next;
  const before = new Map(previous.resources.map((r) => [`${r.kind}\0${r.name}`, r.message]));
  return {
    resources: next.resources.map((r) => ({ ...r, message: kept(before.get(`${r.kind}\0${r.name}`), r.message) })),
    imports: next.imports.map((piece) => {
      const old = previous.imports.find((p) => p.listenPort === piece.listenPort && p.servicePort === piece.servicePort)?.virtualHost;
      return piece.virtualHost ? { ...piece, virtualHost: kept(old, piece.virtualHost) } : piece;
    }),
    exported: next.exported.map((piece) => {
      const old = previous.exported.find((p) => p.cluster.name === piece.cluster.name);
      if (!old) return piece;
      return {
        cluster: { ...piece.cluster, message: kept(old.cluster.message, piece.cluster.message) },
        endpoint: { ...piece.endpoint, message: kept(old.endpoint.message, piece.endpoint.message) },
        chain: kept(old.chain, piece.chain),
      };
    }),
    warnings: next.warnings,
  };
}

function kept(old: ProtoMessage | undefined, next: ProtoMessage): ProtoMessage {
  return old !== undefined && deepEqual(old, next) ? old : next;
}

/** Structural equality of translated (JSON-shaped) values. */
function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => Object.hasOwn(y, k) && deepEqual(x[k], y[k]));
}

/** What every service's translation reads beyond its own inputs; when it changes, nothing is reused. */
function contextKey(snapshot: FederationSnapshot): string {
  return JSON.stringify([snapshot.self, snapshot.proxyless, snapshot.tls.trustDomain]);
}

/** Every input one service's translation reads; equal keys give equal translations. */
function serviceInputKey(snapshot: FederationSnapshot, service: SnapshotService): string {
  // The last view of a name wins, as in outboundLoadAssignment.
  const views = service.exports.map((e) => snapshot.clusters.findLast((c) => c.name === e.cluster) ?? null);
  return JSON.stringify([
    service,
    snapshot.policies.get(service.key) ?? null,
    snapshot.localEndpoints.get(service.key) ?? null,
    snapshot.importPorts.get(service.key) ?? null,
    views,
  ]);
}

function translateService(snapshot: FederationSnapshot, service: SnapshotService, flavour: Flavour): ServiceTranslation {
  const out: ServiceTranslation = { resources: [], imports: [], exported: [], warnings: [] };
  const add = (kind: ResourceKind, name: string, message: ProtoMessage, refs: ResourceRef[] = []) => {
    out.resources.push({ kind, name, message, refs });
  };
  const policy = snapshot.policies.get(service.key) ?? DEFAULT_SERVICE_POLICY;
  const ports = servicePorts(service, out.warnings);
  let aliasesLeft = flavour === "proxyless" ? [...policy.aliases] : [];
  for (const port of ports) {
    const cluster = outboundClusterName(service, port.port);
    add("cluster", cluster, outboundCluster(snapshot, service, port, policy, flavour), [{ kind: "endpoint", name: cluster }, ...secretRefs(flavour)]);
    add("endpoint", cluster, outboundLoadAssignment(snapshot, service, port, policy, flavour, out.warnings));
    if (flavour === "proxyless") {
      if (!port.grpc) continue;
      const route = routeName(service, port.port);
      add("route", route, routeConfiguration(route, [virtualHost(service, port, policy, ["*"])]), [{ kind: "cluster", name: cluster }]);
      for (const name of [apiListenerName(service, port.port), ...aliasesLeft]) add("listener", name, apiListener(name, route), [{ kind: "route", name: route }]);
      aliasesLeft = [];
    } else {
      const listenPort = snapshot.importPorts.get(service.key)?.find((p) => p.port === port.port)?.gatewayPort ?? port.port;
      const host = clustersetHost(service);
      const domains = [host, `${host}:${port.port}`, `${service.name}.${service.namespace}`, `${service.name}.${service.namespace}:${port.port}`];
      out.imports.push({ listenPort, servicePort: port.port, service, cluster, virtualHost: port.l7 ? virtualHost(service, port, policy, domains) : undefined });
    }
  }
  if (aliasesLeft.length) out.warnings.push({ path: `policies[${service.key}].aliases`, message: "the service has no gRPC port; aliases ignored" });
  if (flavour === "gateway") out.exported = exportPieces(snapshot, service, policy);
  return out;
}

/** The whole translation from per-service pieces, in the order a from-scratch translation adds them. */
function assemble(snapshot: FederationSnapshot, flavour: Flavour, services: readonly ServiceTranslation[], reuse: Reuse): Translation {
  const out = emptyResourceSet();
  const warnings: Problem[] = [];
  const put = (r: TranslatedResource) => out[r.kind].set(r.name, r);
  const add = (kind: ResourceKind, name: string, message: ProtoMessage, refs: ResourceRef[] = []) => put({ kind, name, message, refs });
  // Keyed by the port the import listener binds: the controller's allocation, else the service port.
  const importPorts = new Map<number, ImportEntry>();
  for (const service of services) {
    service.resources.forEach(put);
    warnings.push(...service.warnings);
    for (const piece of service.imports) {
      const entry = importPorts.get(piece.listenPort) ?? { servicePort: piece.servicePort, l7: [], l4: [] };
      if (entry.servicePort !== piece.servicePort) {
        warnings.push({
          path: `importPorts[${piece.service.key}]`,
          message: `gateway port ${piece.listenPort} already serves service port ${entry.servicePort}; no import listener for port ${piece.servicePort}`,
        });
        continue;
      }
      (piece.virtualHost ? entry.l7 : entry.l4).push(piece);
      importPorts.set(piece.listenPort, entry);
    }
  }
  if (flavour === "gateway") {
    for (const [port, entry] of [...importPorts].sort(([a], [b]) => a - b)) addImportListener(port, entry, add, reuse, warnings);
    addExportListener(services, add, put, reuse);
    const tls = snapshot.tls;
    add(
      "secret",
      GATEWAY_CERT_SECRET,
      reuse(`secret\0${GATEWAY_CERT_SECRET}`, [tls.gatewayCertChainPem, tls.gatewayKeyPem], () => ({
        name: GATEWAY_CERT_SECRET,
        tls_certificate: { certificate_chain: { inline_string: tls.gatewayCertChainPem }, private_key: { inline_string: tls.gatewayKeyPem } },
      })),
    );
    add(
      "secret",
      TRUST_BUNDLE_SECRET,
      reuse(`secret\0${TRUST_BUNDLE_SECRET}`, [...tls.trustBundlePems, tls.trustDomain, tls.revocationsPem], () => ({
        name: TRUST_BUNDLE_SECRET,
        validation_context: {
          trusted_ca: { inline_string: tls.trustBundlePems.join("\n") },
          match_typed_subject_alt_names: [{ san_type: "URI", matcher: { prefix: `spiffe://${tls.trustDomain}/` } }],
          ...(tls.revocationsPem ? { crl: { inline_string: tls.revocationsPem } } : {}),
        },
      })),
    );
  }
  return { resources: out, warnings };
}

function servicePorts(service: SnapshotService, warnings: Problem[]): PortInfo[] {
  // The oldest export is the MCS conflict winner: its ports define the service.
  const winner = service.exports[0];
  const ports: PortInfo[] = [];
  for (const p of winner?.ports ?? []) {
    if (p.protocol !== "TCP") {
      warnings.push({ path: `services[${service.key}].ports[${p.port}]`, message: `${p.protocol} is not routed through the gateway` });
      continue;
    }
    const app = p.appProtocol?.toLowerCase() ?? "";
    const portName = p.name?.toLowerCase() ?? "";
    const grpc = GRPC_APP_PROTOCOLS.has(app) || portName === "grpc" || portName.startsWith("grpc-");
    const l7 = grpc || L7_APP_PROTOCOLS.has(app) || portName === "http" || portName.startsWith("http-") || portName.startsWith("http2");
    ports.push({ port: p.port, l7, grpc });
  }
  return ports;
}

function secretRefs(flavour: Flavour): ResourceRef[] {
  return flavour === "gateway"
    ? [
        { kind: "secret", name: GATEWAY_CERT_SECRET },
        { kind: "secret", name: TRUST_BUNDLE_SECRET },
      ]
    : [];
}

function duration(ms: number): ProtoMessage {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

function sdsCommonTlsContext(): ProtoMessage {
  return {
    tls_certificate_sds_secret_configs: [{ name: GATEWAY_CERT_SECRET, sds_config: ADS_SOURCE }],
    validation_context_sds_secret_config: { name: TRUST_BUNDLE_SECRET, sds_config: ADS_SOURCE },
  };
}

function outboundCluster(snapshot: FederationSnapshot, service: SnapshotService, port: PortInfo, policy: ServicePolicy, flavour: Flavour): ProtoMessage {
  const name = outboundClusterName(service, port.port);
  const od = policy.outlierDetection;
  const cluster: Record<string, unknown> = {
    name,
    type: "EDS",
    eds_cluster_config: { eds_config: ADS_SOURCE, service_name: name },
    connect_timeout: duration(policy.connectTimeoutMs),
    lb_policy: "ROUND_ROBIN",
    outlier_detection: {
      consecutive_5xx: { value: od.consecutive5xx },
      interval: duration(od.intervalMs),
      base_ejection_time: duration(od.baseEjectionMs),
      max_ejection_percent: { value: od.maxEjectionPercent },
      enforcing_consecutive_5xx: { value: 100 },
    },
  };
  if (flavour === "gateway") {
    // Local backends are plain; peer gateways get mTLS with the export's SNI (Istio's tlsMode match).
    cluster.transport_socket_matches = [
      {
        name: "fedgate-mtls",
        match: { fields: { [TLS_MATCH_KEY]: { stringValue: "mtls" } } },
        transport_socket: {
          name: "envoy.transport_sockets.tls",
          typed_config: { "@type": `${ANY}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`, sni: exportSni(service, port.port), common_tls_context: sdsCommonTlsContext() },
        },
      },
    ];
    if (policy.healthCheck) {
      const hc = policy.healthCheck;
      cluster.health_checks = [
        { timeout: duration(hc.timeoutMs), interval: duration(hc.intervalMs), unhealthy_threshold: { value: hc.unhealthyThreshold }, healthy_threshold: { value: hc.healthyThreshold }, ...healthCheckKind(service, hc.http) },
      ];
    }
    if (port.grpc) cluster.typed_extension_protocol_options = http2ProtocolOptions();
  } else if (snapshot.proxyless.mtls) {
    cluster.transport_socket = {
      name: "envoy.transport_sockets.tls",
      typed_config: {
        "@type": `${ANY}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
        common_tls_context: {
          tls_certificate_provider_instance: { instance_name: snapshot.proxyless.identityProvider },
          validation_context: {
            ca_certificate_provider_instance: { instance_name: snapshot.proxyless.caProvider },
            match_subject_alt_names: [{ prefix: `spiffe://${snapshot.tls.trustDomain}/` }],
          },
        },
      },
    };
  }
  return cluster;
}

function http2ProtocolOptions(): ProtoMessage {
  return {
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
      "@type": `${ANY}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
      explicit_http_config: { http2_protocol_options: {} },
    },
  };
}

interface EndpointGroup {
  place: LocalityPlace;
  endpoints: { address: string; port: number; healthy: boolean; remote: boolean }[];
  ready: number;
}

/** The dominant zone of a peer's export: most ready endpoints, ties broken by name. */
function dominantZone(ready: readonly { zone: string; ready: number }[]): string {
  const best = [...ready].sort((a, b) => b.ready - a.ready || a.zone.localeCompare(b.zone))[0];
  return best?.zone ?? "";
}

function localGroups(snapshot: FederationSnapshot, endpoints: readonly LocalEndpoint[], port: number): EndpointGroup[] {
  const byZone = new Map<string, EndpointGroup>();
  for (const e of endpoints) {
    if (e.servicePort !== undefined && e.servicePort !== port) continue;
    const group = byZone.get(e.zone) ?? {
      place: { cluster: snapshot.self.cluster, region: snapshot.self.region, zone: e.zone, network: snapshot.self.network },
      endpoints: [],
      ready: 0,
    };
    group.endpoints.push({ address: e.address, port: e.port, healthy: e.ready, remote: false });
    if (e.ready) group.ready += 1;
    byZone.set(e.zone, group);
  }
  return [...byZone.values()].sort((a, b) => a.place.zone.localeCompare(b.place.zone));
}

function outboundLoadAssignment(
  snapshot: FederationSnapshot,
  service: SnapshotService,
  port: PortInfo,
  policy: ServicePolicy,
  flavour: Flavour,
  warnings: Problem[],
): ProtoMessage {
  const name = outboundClusterName(service, port.port);
  const groups = localGroups(snapshot, snapshot.localEndpoints.get(service.key) ?? [], port.port);
  const views = new Map(snapshot.clusters.map((c) => [c.name, c]));
  for (const e of service.exports) {
    if (e.cluster === snapshot.self.cluster) continue;
    const view = views.get(e.cluster);
    if (view?.stale) continue;
    if (!e.ports.some((p) => p.port === port.port)) continue;
    const ready = e.readyEndpoints.reduce((sum, r) => sum + r.ready, 0);
    groups.push({
      // One locality per peer cluster: its gateway is one address, and gRPC rejects an address listed twice.
      place: { cluster: e.cluster, region: view?.registration?.region ?? "", zone: dominantZone(e.readyEndpoints), network: view?.registration?.network ?? "" },
      endpoints: [{ address: e.gateway.host, port: e.gateway.port, healthy: ready > 0, remote: true }],
      ready,
    });
  }
  const seen = new Set<string>();
  for (const g of groups) {
    g.endpoints = g.endpoints.filter((e) => {
      const key = `${e.address}:${e.port}`;
      if (seen.has(key)) {
        warnings.push({ path: `endpoints[${name}]`, message: `${key} (cluster ${g.place.cluster}) is listed twice; dropped the later one` });
        return false;
      }
      seen.add(key);
      return true;
    });
  }
  const kept = groups.filter((g) => g.endpoints.length > 0);
  const priorities = localityPriorities(snapshot.self, kept.map((g) => g.place), policy.failover);
  return {
    cluster_name: name,
    endpoints: kept.map((g, i) => ({
      locality: { region: g.place.region, zone: g.place.zone, sub_zone: g.place.cluster },
      priority: priorities[i] ?? 0,
      // Weight from ready endpoints; a locality with none keeps weight 1 and unhealthy endpoints.
      load_balancing_weight: { value: Math.max(1, g.ready) },
      lb_endpoints: g.endpoints.map((e) => lbEndpoint(e, g.place.cluster, flavour)),
    })),
  };
}

function lbEndpoint(e: { address: string; port: number; healthy: boolean; remote: boolean }, cluster: string, flavour: Flavour): ProtoMessage {
  const endpoint: Record<string, unknown> = {
    endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } },
    health_status: e.healthy ? "HEALTHY" : "UNHEALTHY",
  };
  if (flavour === "gateway") {
    const fields: Record<string, unknown> = { cluster: { stringValue: cluster } };
    const filterMetadata: Record<string, unknown> = { fedgate: { fields } };
    if (e.remote) filterMetadata[TRANSPORT_SOCKET_MATCH] = { fields: { [TLS_MATCH_KEY]: { stringValue: "mtls" } } };
    endpoint.metadata = { filter_metadata: filterMetadata };
  }
  return endpoint;
}

/** TCP connects, or with `http` Envoy's `http_health_check` (Host: the clusterset name unless set). */
function healthCheckKind(service: SnapshotService, http: HttpHealthCheck | undefined): ProtoMessage {
  if (!http) return { tcp_health_check: {} };
  const check: Record<string, unknown> = { path: http.path, host: http.host ?? clustersetHost(service) };
  if (http.expectedStatuses.length) check.expected_statuses = http.expectedStatuses.map((r) => ({ start: r.start, end: r.end }));
  return { http_health_check: check };
}

function routeConfiguration(name: string, virtualHosts: ProtoMessage[]): ProtoMessage {
  return { name, virtual_hosts: virtualHosts };
}

function virtualHost(service: SnapshotService, port: PortInfo, policy: ServicePolicy, domains: string[]): ProtoMessage {
  const route: Record<string, unknown> = { cluster: outboundClusterName(service, port.port) };
  if (policy.timeoutMs > 0) {
    route.timeout = duration(policy.timeoutMs);
    // gRPC reads the stream deadline from here, not from `timeout` (gRFC A28).
    if (port.grpc) route.max_stream_duration = { max_stream_duration: duration(policy.timeoutMs) };
  }
  if (policy.retries.attempts > 0) {
    const retry: Record<string, unknown> = {
      retry_on: port.grpc ? "connect-failure,refused-stream,reset,unavailable,cancelled,resource-exhausted" : "connect-failure,refused-stream,reset,5xx,gateway-error",
      num_retries: { value: policy.retries.attempts },
      retry_back_off: { base_interval: duration(25), max_interval: duration(250) },
      retry_host_predicate: [
        { name: "envoy.retry_host_predicates.previous_hosts", typed_config: { "@type": `${ANY}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate` } },
      ],
      host_selection_retry_max_attempts: 3,
    };
    if (policy.retries.perTryTimeoutMs !== undefined) retry.per_try_timeout = duration(policy.retries.perTryTimeoutMs);
    if (policy.retries.nextPriority) {
      retry.retry_priority = {
        name: "envoy.retry_priorities.previous_priorities",
        typed_config: { "@type": `${ANY}envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig`, update_frequency: 1 },
      };
    }
    route.retry_policy = retry;
  }
  return { name: `${clustersetHost(service)}:${port.port}`, domains, routes: [{ match: { prefix: "/" }, route }] };
}

function hcm(statPrefix: string, route: string): ProtoMessage {
  return {
    "@type": `${ANY}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
    stat_prefix: statPrefix,
    rds: { route_config_name: route, config_source: ADS_SOURCE },
    http_filters: [{ name: "envoy.filters.http.router", typed_config: { "@type": `${ANY}envoy.extensions.filters.http.router.v3.Router` } }],
  };
}

function apiListener(name: string, route: string): ProtoMessage {
  return { name, api_listener: { api_listener: hcm(name, route) } };
}

function tcpProxy(statPrefix: string, cluster: string): ProtoMessage {
  return {
    name: "envoy.filters.network.tcp_proxy",
    typed_config: { "@type": `${ANY}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`, stat_prefix: statPrefix, cluster },
  };
}

type Add = (kind: ResourceKind, name: string, message: ProtoMessage, refs?: ResourceRef[]) => void;

function addImportListener(listenPort: number, entry: ImportEntry, add: Add, reuse: Reuse, warnings: Problem[]): void {
  const port = entry.servicePort;
  const name = importListenerName(listenPort);
  const address = () => ({ socket_address: { address: "0.0.0.0", port_value: listenPort } });
  if (entry.l7.length > 0) {
    // HTTP and gRPC services share the port, told apart by Host/:authority (Istio's 0.0.0.0_<port> shape).
    const hosts = entry.l7.flatMap((piece) => (piece.virtualHost ? [piece.virtualHost] : []));
    add("route", name, reuse(`route\0${name}`, hosts, () => routeConfiguration(name, hosts)), entry.l7.map((piece) => ({ kind: "cluster", name: piece.cluster })));
    add(
      "listener",
      name,
      reuse(`listener\0${name}`, ["l7"], () => ({ name, address: address(), filter_chains: [{ filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm(name, name) }] }] })),
      [{ kind: "route", name }],
    );
    for (const piece of entry.l4) warnings.push({ path: `services[${piece.service.key}]`, message: `TCP port ${port} is shared with HTTP services; no import listener without a ClusterSet IP` });
    return;
  }
  const [first, ...rest] = entry.l4;
  if (!first) return;
  for (const piece of rest) warnings.push({ path: `services[${piece.service.key}]`, message: `TCP port ${port} is already imported for ${first.service.key}; no import listener without a ClusterSet IP` });
  const cluster = first.cluster;
  add("listener", name, reuse(`listener\0${name}`, ["l4", cluster], () => ({ name, address: address(), filter_chains: [{ filters: [tcpProxy(name, cluster)] }] })), [{ kind: "cluster", name: cluster }]);
}

/** The inbound side of this cluster's own export of a service: one cluster, assignment and SNI chain per TCP port. */
function exportPieces(snapshot: FederationSnapshot, service: SnapshotService, policy: ServicePolicy): ExportPiece[] {
  const own = service.exports.find((e) => e.cluster === snapshot.self.cluster);
  const pieces: ExportPiece[] = [];
  for (const p of own?.ports ?? []) {
    if (p.protocol !== "TCP") continue;
    const cluster = inboundClusterName(service, p.port);
    const endpoints = localGroups(snapshot, snapshot.localEndpoints.get(service.key) ?? [], p.port);
    const sni = exportSni(service, p.port);
    pieces.push({
      cluster: {
        kind: "cluster",
        name: cluster,
        message: { name: cluster, type: "EDS", eds_cluster_config: { eds_config: ADS_SOURCE, service_name: cluster }, connect_timeout: duration(policy.connectTimeoutMs), lb_policy: "ROUND_ROBIN" },
        refs: [{ kind: "endpoint", name: cluster }],
      },
      endpoint: {
        kind: "endpoint",
        name: cluster,
        message: {
          cluster_name: cluster,
          endpoints: endpoints.map((g) => ({
            locality: { region: g.place.region, zone: g.place.zone, sub_zone: g.place.cluster },
            load_balancing_weight: { value: Math.max(1, g.ready) },
            lb_endpoints: g.endpoints.map((e) => ({ endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } }, health_status: e.healthy ? "HEALTHY" : "UNHEALTHY" })),
          })),
        },
        refs: [],
      },
      chain: {
        name: sni,
        filter_chain_match: { server_names: [sni] },
        // Who may call this export; absent: every cluster of the trust domain. The data plane enforces it.
        ...(own?.consumers ? { metadata: { filter_metadata: { fedgate: { fields: { consumers: { listValue: { values: own.consumers.map((c) => ({ stringValue: c })) } } } } } } } : {}),
        transport_socket: {
          name: "envoy.transport_sockets.tls",
          typed_config: {
            "@type": `${ANY}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`,
            require_client_certificate: { value: true },
            common_tls_context: sdsCommonTlsContext(),
          },
        },
        filters: [tcpProxy(sni, cluster)],
      },
    });
  }
  return pieces;
}

function addExportListener(services: readonly ServiceTranslation[], add: Add, put: (r: TranslatedResource) => void, reuse: Reuse): void {
  const chains: ProtoMessage[] = [];
  const refs: ResourceRef[] = [
    { kind: "secret", name: GATEWAY_CERT_SECRET },
    { kind: "secret", name: TRUST_BUNDLE_SECRET },
  ];
  for (const piece of services.flatMap((s) => s.exported)) {
    put(piece.cluster);
    put(piece.endpoint);
    chains.push(piece.chain);
    refs.push({ kind: "cluster", name: piece.cluster.name });
  }
  if (!chains.length) return;
  const message = reuse(`listener\0${EXPORT_LISTENER_NAME}`, chains, () => ({
    name: EXPORT_LISTENER_NAME,
    address: { socket_address: { address: "0.0.0.0", port_value: EXPORT_LISTENER_PORT } },
    listener_filters: [
      { name: "envoy.filters.listener.tls_inspector", typed_config: { "@type": `${ANY}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector` } },
    ],
    filter_chains: chains,
  }));
  add("listener", EXPORT_LISTENER_NAME, message, refs);
}
