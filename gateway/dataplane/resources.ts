import { z } from "zod";
import type { Problem } from "../../common/index.ts";

/**
 * The subset of Envoy v3 resources the fedgate gateway honours, parsed from
 * their decoded JSON form (proto field names, Any as `@type`) into frozen
 * internal types. Anything outside the subset is a problem, and a response
 * with problems is NACKed whole (state of the world), keeping the last good
 * config. See gateway/README.md for the table.
 */

const ANY = "type.googleapis.com/";
const TCP_PROXY = `${ANY}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`;
const UPSTREAM_TLS = `${ANY}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`;
const DOWNSTREAM_TLS = `${ANY}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`;
const TLS_INSPECTOR = `${ANY}envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector`;
const HCM = `${ANY}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`;
const ROUTER = `${ANY}envoy.extensions.filters.http.router.v3.Router`;
const HTTP_PROTOCOL_OPTIONS = `${ANY}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`;
const PREVIOUS_HOSTS = `${ANY}envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`;
const PREVIOUS_PRIORITIES = `${ANY}envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig`;
/** Envoy's route defaults (route_components.proto). */
const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;
const DEFAULT_NUM_RETRIES = 1;
const DEFAULT_RETRY_BASE_MS = 25;
/** The retry_on conditions the HTTP listener implements (Envoy's names). */
export const RETRY_CONDITIONS = ["connect-failure", "refused-stream", "reset", "5xx", "gateway-error", "retriable-4xx", "unavailable", "cancelled", "resource-exhausted", "deadline-exceeded", "internal"] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];
/** Envoy's defaults (cluster.proto, outlier_detection.proto). */
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_CONSECUTIVE_FAILURES = 5;
const DEFAULT_OUTLIER_INTERVAL_MS = 10_000;
const DEFAULT_BASE_EJECTION_MS = 30_000;
const DEFAULT_MAX_EJECTION_MS = 300_000;
const DEFAULT_MAX_EJECTION_PERCENT = 10;

export interface SocketAddress {
  readonly host: string;
  readonly port: number;
}

/** TLS origination or termination by SDS secret names. */
export interface SdsTls {
  readonly certSecret: string;
  readonly bundleSecret: string;
}

export interface ImportListenerSpec {
  readonly kind: "tcp";
  readonly name: string;
  readonly address: SocketAddress;
  readonly cluster: string;
}

export interface ExportChainSpec {
  readonly sni: string;
  readonly cluster: string;
  /** Clusters allowed to call; undefined: every cluster of the trust domain. */
  readonly consumers: readonly string[] | undefined;
  readonly tls: SdsTls;
}

export interface ExportListenerSpec {
  readonly kind: "sni-mtls";
  readonly name: string;
  readonly address: SocketAddress;
  readonly chains: readonly ExportChainSpec[];
}

/** An L7 import listener: HTTP connection manager whose routes come by RDS. */
export interface HttpListenerSpec {
  readonly kind: "http";
  readonly name: string;
  readonly address: SocketAddress;
  readonly routeConfig: string;
}

export type ListenerSpec = ImportListenerSpec | ExportListenerSpec | HttpListenerSpec;

export interface RetryPolicySpec {
  readonly retryOn: ReadonlySet<RetryCondition>;
  readonly numRetries: number;
  /** 0: none (only the route timeout bounds a try). */
  readonly perTryTimeoutMs: number;
  readonly backOffBaseMs: number;
  readonly backOffMaxMs: number;
  /** `previous_priorities`: a retry skips the priorities already tried. */
  readonly skipPreviousPriorities: boolean;
  /** `previous_hosts`: a retry avoids endpoints already tried. */
  readonly skipPreviousHosts: boolean;
}

export interface RouteSpec {
  readonly prefix: string;
  readonly cluster: string;
  /** Whole-request deadline; 0: none. gRPC's `max_stream_duration` wins when set. */
  readonly timeoutMs: number;
  readonly retry: RetryPolicySpec | undefined;
}

export interface VirtualHostSpec {
  readonly name: string;
  /** Lower-cased; exact, `*`, `*.suffix` or `prefix*` (Envoy's forms), with or without `:port`. */
  readonly domains: readonly string[];
  readonly routes: readonly RouteSpec[];
}

export interface RouteConfigSpec {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHostSpec[];
}

export interface OutlierSpec {
  readonly consecutiveFailures: number;
  readonly intervalMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
}

export interface HealthCheckSpec {
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  /** Absent: a TCP connect is the check. */
  readonly http?: HttpHealthCheckSpec;
}

export interface HttpHealthCheckSpec {
  readonly path: string;
  /** Empty: the endpoint's `host:port`. */
  readonly host: string;
  /** `[start, end)` ranges; a status in one of them passes. */
  readonly expectedStatuses: readonly { readonly start: number; readonly end: number }[];
}

/** Envoy's default `expected_statuses`: 200 only. */
const DEFAULT_EXPECTED_STATUSES = [{ start: 200, end: 201 }] as const;
const HTTP_HEALTH_CHECK_FIELDS = new Set(["path", "host", "expected_statuses"]);

export interface TlsMatchSpec {
  /** Every field must equal the endpoint's `envoy.transport_socket_match` metadata. */
  readonly match: Readonly<Record<string, string>>;
  readonly sni: string;
  readonly tls: SdsTls;
}

export interface ClusterSpec {
  readonly name: string;
  readonly edsName: string;
  readonly connectTimeoutMs: number;
  readonly outlier: OutlierSpec | undefined;
  readonly healthCheck: HealthCheckSpec | undefined;
  readonly tlsMatches: readonly TlsMatchSpec[];
  /** `HttpProtocolOptions.explicit_http_config.http2_protocol_options`: L7 requests go upstream as h2. */
  readonly http2: boolean;
}

export interface EndpointSpec {
  readonly address: SocketAddress;
  /** EDS health: HEALTHY/UNKNOWN count as usable. */
  readonly healthy: boolean;
  /** The fedgate cluster serving it (`filter_metadata.fedgate.cluster`), for metrics and logs. */
  readonly servingCluster: string;
  readonly tlsMatchFields: Readonly<Record<string, string>>;
}

export interface LocalitySpec {
  readonly priority: number;
  readonly weight: number;
  readonly endpoints: readonly EndpointSpec[];
}

export interface LoadAssignmentSpec {
  readonly name: string;
  readonly localities: readonly LocalitySpec[];
}

export type SecretSpec =
  | { readonly kind: "certificate"; readonly name: string; readonly chainPem: string; readonly keyPem: string }
  | { readonly kind: "validation"; readonly name: string; readonly caPem: string; readonly trustDomain: string; readonly crlPem: string };

// ---- schemas of the decoded JSON (loose: unknown fields are checked by hand where they matter) ----

const duration = z.looseObject({ seconds: z.union([z.string(), z.number()]).optional(), nanos: z.number().optional() });
const u32 = z.looseObject({ value: z.number().int().min(0) });
/** protobufjs gives int64 fields as strings. */
const int64 = z.union([z.string().regex(/^-?\d+$/), z.number().int()]).transform(Number);
const socketAddress = z.looseObject({ socket_address: z.looseObject({ address: z.string().min(1), port_value: z.number().int().min(0).max(65_535).default(0) }) });
const typed = z.looseObject({ "@type": z.string() });
const sdsRef = z.looseObject({ name: z.string().min(1) });
const commonTls = z.looseObject({
  tls_certificate_sds_secret_configs: z.array(sdsRef).length(1, "exactly one SDS certificate is supported"),
  validation_context_sds_secret_config: sdsRef,
});
const structValue: z.ZodType<unknown> = z.unknown();
const struct = z.looseObject({ fields: z.record(z.string(), structValue).default({}) });

function ms(d: z.infer<typeof duration> | undefined, fallback: number): number {
  if (!d) return fallback;
  return Number(d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1_000_000);
}

function zodProblems(at: string, error: z.ZodError): Problem[] {
  return error.issues.map((i) => ({ path: [at, ...i.path.map(String)].filter(Boolean).join("."), message: i.message }));
}

function stringField(v: unknown): string | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const s = (v as Record<string, unknown>).stringValue ?? (v as Record<string, unknown>).string_value;
  return typeof s === "string" ? s : undefined;
}

function stringList(v: unknown): string[] | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const list = (v as Record<string, unknown>).listValue ?? (v as Record<string, unknown>).list_value;
  const values = typeof list === "object" && list !== null ? (list as Record<string, unknown>).values : undefined;
  if (!Array.isArray(values)) return undefined;
  const out: string[] = [];
  for (const item of values) {
    const str = stringField(item);
    if (str === undefined) return undefined;
    out.push(str);
  }
  return out;
}

function stringFields(s: z.infer<typeof struct> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) {
    const str = stringField(v);
    if (str !== undefined) out[k] = str;
  }
  return out;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problems: Problem[] };

function parseWith<S extends z.ZodType, T>(schema: S, raw: unknown, at: string, build: (v: z.output<S>, problems: Problem[]) => T): Parsed<T> {
  const r = schema.safeParse(raw);
  if (!r.success) return { ok: false, problems: zodProblems(at, r.error) };
  const problems: Problem[] = [];
  const value = build(r.data, problems);
  return problems.length ? { ok: false, problems } : { ok: true, value };
}

// ---- Listener ----

const tcpProxyFilter = z.looseObject({
  name: z.string(),
  typed_config: typed.and(
    z.looseObject({
      cluster: z.string().optional(),
      weighted_clusters: z.unknown().optional(),
      // HTTP connection manager fields.
      rds: z.looseObject({ route_config_name: z.string().min(1), config_source: z.looseObject({ ads: z.unknown().optional() }).optional() }).optional(),
      route_config: z.unknown().optional(),
      scoped_routes: z.unknown().optional(),
      codec_type: z.string().default("AUTO"),
      http_filters: z.array(z.looseObject({ name: z.string(), typed_config: typed.optional() })).default([]),
    }),
  ),
});
const listenerSchema = z.looseObject({
  name: z.string().min(1),
  address: socketAddress,
  listener_filters: z.array(z.looseObject({ name: z.string(), typed_config: typed.optional() })).default([]),
  filter_chains: z
    .array(
      z.looseObject({
        filter_chain_match: z.looseObject({ server_names: z.array(z.string()).default([]) }).optional(),
        filters: z.array(tcpProxyFilter).min(1),
        transport_socket: z.looseObject({ name: z.string(), typed_config: typed.and(z.looseObject({ require_client_certificate: z.looseObject({ value: z.boolean() }).optional(), common_tls_context: commonTls.optional() })) }).optional(),
        metadata: z.looseObject({ filter_metadata: z.record(z.string(), struct).default({}) }).optional(),
      }),
    )
    .min(1),
  api_listener: z.unknown().optional(),
});

export function parseListener(raw: unknown, at: string): Parsed<ListenerSpec> {
  return parseWith(listenerSchema, raw, at, (l, problems): ListenerSpec => {
    const address = { host: l.address.socket_address.address, port: l.address.socket_address.port_value };
    if (l.api_listener !== undefined) problems.push({ path: `${at}.api_listener`, message: "API listeners are for proxyless gRPC" });
    for (const [i, f] of l.listener_filters.entries()) {
      if (f.typed_config?.["@type"] !== TLS_INSPECTOR) problems.push({ path: `${at}.listener_filters[${i}]`, message: `unsupported listener filter ${f.name}` });
    }
    const tcpCluster = (chainAt: string, filters: z.infer<typeof tcpProxyFilter>[]): string => {
      if (filters.length !== 1 || filters[0]!.typed_config["@type"] !== TCP_PROXY) {
        problems.push({ path: `${chainAt}.filters`, message: `only a single tcp_proxy filter is supported (got ${filters.map((f) => f.typed_config["@type"].replace(ANY, "")).join(", ")})` });
        return "";
      }
      const cfg = filters[0]!.typed_config;
      if (cfg.weighted_clusters !== undefined || !cfg.cluster) problems.push({ path: `${chainAt}.filters[0]`, message: "tcp_proxy must name one cluster" });
      return cfg.cluster ?? "";
    };
    const tlsChains = l.filter_chains.filter((c) => c.transport_socket);
    const hcmChain = l.filter_chains.findIndex((c) => c.filters.some((f) => f.typed_config["@type"] === HCM));
    if (hcmChain >= 0) {
      const chainAt = `${at}.filter_chains[${hcmChain}]`;
      if (l.filter_chains.length !== 1 || tlsChains.length) problems.push({ path: `${at}.filter_chains`, message: "an HTTP listener takes exactly one plain filter chain" });
      const filters = l.filter_chains[hcmChain]!.filters;
      if (filters.length !== 1) problems.push({ path: `${chainAt}.filters`, message: "the HTTP connection manager must be the only network filter" });
      return { kind: "http", name: l.name, address, routeConfig: httpConnectionManager(`${chainAt}.filters[0].typed_config`, filters.find((f) => f.typed_config["@type"] === HCM)!.typed_config, problems) };
    }
    if (tlsChains.length === 0) {
      if (l.filter_chains.length !== 1) problems.push({ path: `${at}.filter_chains`, message: "a plain listener takes exactly one filter chain" });
      const chain = l.filter_chains[0]!;
      if (chain.filter_chain_match?.server_names.length) problems.push({ path: `${at}.filter_chains[0]`, message: "SNI matching needs a TLS transport socket" });
      return { kind: "tcp", name: l.name, address, cluster: tcpCluster(`${at}.filter_chains[0]`, chain.filters) };
    }
    const chains: ExportChainSpec[] = [];
    l.filter_chains.forEach((c, i) => {
      const chainAt = `${at}.filter_chains[${i}]`;
      const ts = c.transport_socket;
      if (!ts || ts.typed_config["@type"] !== DOWNSTREAM_TLS || !ts.typed_config.common_tls_context) {
        problems.push({ path: chainAt, message: "every chain of an SNI listener needs a DownstreamTlsContext with SDS secrets" });
        return;
      }
      if (ts.typed_config.require_client_certificate?.value !== true) problems.push({ path: chainAt, message: "only mTLS (require_client_certificate) is supported" });
      const names = c.filter_chain_match?.server_names ?? [];
      if (names.length === 0) problems.push({ path: chainAt, message: "a TLS chain must match server_names (no default chain)" });
      const cluster = tcpCluster(chainAt, c.filters);
      const consumersRaw = c.metadata?.filter_metadata.fedgate?.fields.consumers;
      const consumers = consumersRaw === undefined ? undefined : stringList(consumersRaw);
      if (consumersRaw !== undefined && consumers === undefined) problems.push({ path: `${chainAt}.metadata`, message: "fedgate.consumers must be a list of strings" });
      const tls = { certSecret: ts.typed_config.common_tls_context.tls_certificate_sds_secret_configs[0]!.name, bundleSecret: ts.typed_config.common_tls_context.validation_context_sds_secret_config.name };
      for (const sni of names) chains.push({ sni, cluster, consumers, tls });
    });
    return { kind: "sni-mtls", name: l.name, address, chains };
  });
}

function httpConnectionManager(at: string, cfg: z.infer<typeof tcpProxyFilter>["typed_config"], problems: Problem[]): string {
  if (cfg.route_config !== undefined || cfg.scoped_routes !== undefined) problems.push({ path: at, message: "routes must come by RDS (no inline route_config or scoped_routes)" });
  if (!cfg.rds) problems.push({ path: `${at}.rds`, message: "an RDS route_config_name is required" });
  else if (cfg.rds.config_source && cfg.rds.config_source.ads === undefined) problems.push({ path: `${at}.rds.config_source`, message: "only the ADS config source is supported" });
  if (cfg.codec_type !== "AUTO") problems.push({ path: `${at}.codec_type`, message: `only AUTO (HTTP/1.1 and h2c by preface) is supported, got ${cfg.codec_type}` });
  const filters = cfg.http_filters;
  if (filters.length !== 1 || filters[0]!.typed_config?.["@type"] !== ROUTER) {
    problems.push({ path: `${at}.http_filters`, message: `only the router filter is supported (got ${filters.map((f) => f.name).join(", ") || "none"})` });
  }
  return cfg.rds?.route_config_name ?? "";
}

// ---- RouteConfiguration ----

const retryPolicySchema = z.looseObject({
  retry_on: z.string().default(""),
  num_retries: u32.optional(),
  per_try_timeout: duration.optional(),
  per_try_idle_timeout: z.unknown().optional(),
  retry_back_off: z.looseObject({ base_interval: duration, max_interval: duration.optional() }).optional(),
  retry_priority: z.looseObject({ name: z.string(), typed_config: typed.and(z.looseObject({ update_frequency: z.number().int().optional() })).optional() }).optional(),
  retry_host_predicate: z.array(z.looseObject({ name: z.string(), typed_config: typed.optional() })).default([]),
  host_selection_retry_max_attempts: z.union([z.string(), z.number()]).optional(),
  retriable_status_codes: z.array(z.number()).default([]),
  retriable_headers: z.array(z.unknown()).default([]),
  rate_limited_retry_back_off: z.unknown().optional(),
});

const routeSchema = z.looseObject({
  match: z.looseObject({
    prefix: z.string().optional(),
    path: z.string().optional(),
    safe_regex: z.unknown().optional(),
    path_separated_prefix: z.string().optional(),
    headers: z.array(z.unknown()).default([]),
    query_parameters: z.array(z.unknown()).default([]),
    grpc: z.unknown().optional(),
  }),
  route: z
    .looseObject({
      cluster: z.string().optional(),
      weighted_clusters: z.unknown().optional(),
      cluster_header: z.string().optional(),
      timeout: duration.optional(),
      retry_policy: retryPolicySchema.optional(),
      max_stream_duration: z.looseObject({ max_stream_duration: duration.optional(), grpc_timeout_header_max: duration.optional() }).optional(),
    })
    .optional(),
  redirect: z.unknown().optional(),
  direct_response: z.unknown().optional(),
});

const routeConfigSchema = z.looseObject({
  name: z.string().min(1),
  virtual_hosts: z
    .array(
      z.looseObject({
        name: z.string().min(1),
        domains: z.array(z.string().min(1)).min(1),
        routes: z.array(routeSchema).default([]),
        retry_policy: z.unknown().optional(),
        require_tls: z.string().optional(),
      }),
    )
    .default([]),
  vhds: z.unknown().optional(),
});

function retryPolicy(at: string, r: z.infer<typeof retryPolicySchema>, problems: Problem[]): RetryPolicySpec {
  const retryOn = new Set<RetryCondition>();
  for (const c of r.retry_on.split(",").map((x) => x.trim()).filter(Boolean)) {
    if ((RETRY_CONDITIONS as readonly string[]).includes(c)) retryOn.add(c as RetryCondition);
    else problems.push({ path: `${at}.retry_on`, message: `unsupported retry condition ${c}` });
  }
  if (r.per_try_idle_timeout !== undefined || r.retriable_status_codes.length || r.retriable_headers.length || r.rate_limited_retry_back_off !== undefined) {
    problems.push({ path: at, message: "per_try_idle_timeout, retriable_status_codes, retriable_headers and rate-limited back-off are not supported" });
  }
  if (r.retry_priority && r.retry_priority.typed_config?.["@type"] !== PREVIOUS_PRIORITIES) problems.push({ path: `${at}.retry_priority`, message: `only previous_priorities is supported, got ${r.retry_priority.name}` });
  for (const [i, p] of r.retry_host_predicate.entries()) {
    if (p.typed_config?.["@type"] !== PREVIOUS_HOSTS) problems.push({ path: `${at}.retry_host_predicate[${i}]`, message: `only previous_hosts is supported, got ${p.name}` });
  }
  const base = ms(r.retry_back_off?.base_interval, DEFAULT_RETRY_BASE_MS);
  return {
    retryOn,
    numRetries: r.num_retries?.value ?? DEFAULT_NUM_RETRIES,
    perTryTimeoutMs: ms(r.per_try_timeout, 0),
    backOffBaseMs: base,
    backOffMaxMs: Math.max(base, ms(r.retry_back_off?.max_interval, base * 10)),
    skipPreviousPriorities: r.retry_priority !== undefined,
    skipPreviousHosts: r.retry_host_predicate.length > 0,
  };
}

export function parseRouteConfiguration(raw: unknown, at: string): Parsed<RouteConfigSpec> {
  return parseWith(routeConfigSchema, raw, at, (rc, problems): RouteConfigSpec => {
    if (rc.vhds !== undefined) problems.push({ path: `${at}.vhds`, message: "VHDS is not supported" });
    const virtualHosts = rc.virtual_hosts.map((vh, i): VirtualHostSpec => {
      const vhAt = `${at}.virtual_hosts[${i}]`;
      if (vh.retry_policy !== undefined || (vh.require_tls !== undefined && vh.require_tls !== "NONE")) problems.push({ path: vhAt, message: "virtual-host retry_policy and require_tls are not supported (set them per route)" });
      for (const d of vh.domains) {
        const stars = d.split("*").length - 1;
        if (stars > 1 || (stars === 1 && d !== "*" && !d.startsWith("*") && !d.endsWith("*"))) problems.push({ path: `${vhAt}.domains`, message: `unsupported domain pattern ${d}` });
      }
      const routes = vh.routes.map((r, j): RouteSpec => {
        const rAt = `${vhAt}.routes[${j}]`;
        const m = r.match;
        if (m.prefix === undefined || m.path !== undefined || m.safe_regex !== undefined || m.path_separated_prefix !== undefined || m.headers.length || m.query_parameters.length || m.grpc !== undefined) {
          problems.push({ path: `${rAt}.match`, message: "only a prefix match is supported" });
        }
        if (!r.route || r.redirect !== undefined || r.direct_response !== undefined) problems.push({ path: rAt, message: "only route actions are supported (no redirect or direct_response)" });
        const action = r.route;
        if (action && (!action.cluster || action.weighted_clusters !== undefined || action.cluster_header !== undefined)) problems.push({ path: `${rAt}.route`, message: "a route must name one cluster" });
        const streamMs = ms(action?.max_stream_duration?.max_stream_duration, 0);
        return {
          prefix: m.prefix ?? "/",
          cluster: action?.cluster ?? "",
          timeoutMs: streamMs > 0 ? streamMs : ms(action?.timeout, DEFAULT_ROUTE_TIMEOUT_MS),
          retry: action?.retry_policy && retryPolicy(`${rAt}.route.retry_policy`, action.retry_policy, problems),
        };
      });
      return { name: vh.name, domains: vh.domains.map((d) => d.toLowerCase()), routes };
    });
    return { name: rc.name, virtualHosts };
  });
}

// ---- Cluster ----

const clusterSchema = z.looseObject({
  name: z.string().min(1),
  type: z.string().default("STATIC"),
  eds_cluster_config: z.looseObject({ service_name: z.string().optional() }).optional(),
  connect_timeout: duration.optional(),
  lb_policy: z.string().default("ROUND_ROBIN"),
  outlier_detection: z
    .looseObject({
      consecutive_5xx: u32.optional(),
      interval: duration.optional(),
      base_ejection_time: duration.optional(),
      max_ejection_time: duration.optional(),
      max_ejection_percent: u32.optional(),
    })
    .optional(),
  health_checks: z
    .array(
      z.looseObject({
        timeout: duration,
        interval: duration,
        unhealthy_threshold: u32,
        healthy_threshold: u32,
        tcp_health_check: z.looseObject({ send: z.unknown().optional(), receive: z.unknown().optional() }).optional(),
        http_health_check: z
          .looseObject({
            path: z.string().default(""),
            host: z.string().default(""),
            expected_statuses: z.array(z.looseObject({ start: int64, end: int64 })).default([]),
          })
          .optional(),
      }),
    )
    .max(1, "at most one health check")
    .default([]),
  transport_socket_matches: z
    .array(
      z.looseObject({
        name: z.string(),
        match: struct.optional(),
        transport_socket: z.looseObject({ typed_config: typed.and(z.looseObject({ sni: z.string().default(""), common_tls_context: commonTls })) }),
      }),
    )
    .default([]),
  transport_socket: z.unknown().optional(),
  typed_extension_protocol_options: z
    .record(
      z.string(),
      typed.and(z.looseObject({ explicit_http_config: z.looseObject({ http_protocol_options: z.unknown().optional(), http2_protocol_options: z.unknown().optional() }).optional() })),
    )
    .default({}),
});

export function parseCluster(raw: unknown, at: string): Parsed<ClusterSpec> {
  return parseWith(clusterSchema, raw, at, (c, problems): ClusterSpec => {
    if (c.type !== "EDS") problems.push({ path: `${at}.type`, message: `only EDS clusters are supported, got ${c.type}` });
    if (c.lb_policy !== "ROUND_ROBIN") problems.push({ path: `${at}.lb_policy`, message: `only ROUND_ROBIN is supported, got ${c.lb_policy}` });
    if (c.transport_socket !== undefined) problems.push({ path: `${at}.transport_socket`, message: "use transport_socket_matches (per-endpoint TLS)" });
    const hc = c.health_checks[0];
    const httpHc = hc?.http_health_check;
    if (hc && httpHc) {
      const hcAt = `${at}.health_checks[0].http_health_check`;
      if (hc.tcp_health_check) problems.push({ path: `${at}.health_checks[0]`, message: "one of tcp_health_check and http_health_check" });
      if (!httpHc.path.startsWith("/")) problems.push({ path: `${hcAt}.path`, message: "must be an absolute path" });
      const others = Object.keys(httpHc).filter((k) => !HTTP_HEALTH_CHECK_FIELDS.has(k));
      if (others.length) problems.push({ path: hcAt, message: `only path, host and expected_statuses are supported, got ${others.join(", ")}` });
      httpHc.expected_statuses.forEach((r, i) => {
        if (!(r.start >= 100 && r.start < r.end && r.end <= 600)) problems.push({ path: `${hcAt}.expected_statuses[${i}]`, message: `must be a range within [100, 600), got [${r.start}, ${r.end})` });
      });
    } else if (hc && (!hc.tcp_health_check || hc.tcp_health_check.send !== undefined || hc.tcp_health_check.receive !== undefined)) {
      problems.push({ path: `${at}.health_checks[0]`, message: "only connect-only tcp_health_check or http_health_check is supported" });
    }
    const tlsMatches = c.transport_socket_matches.map((m, i) => {
      if (m.transport_socket.typed_config["@type"] !== UPSTREAM_TLS) problems.push({ path: `${at}.transport_socket_matches[${i}]`, message: "only UpstreamTlsContext is supported" });
      const ctx = m.transport_socket.typed_config.common_tls_context;
      return { match: stringFields(m.match), sni: m.transport_socket.typed_config.sni, tls: { certSecret: ctx.tls_certificate_sds_secret_configs[0]!.name, bundleSecret: ctx.validation_context_sds_secret_config.name } };
    });
    let http2 = false;
    for (const [key, opts] of Object.entries(c.typed_extension_protocol_options)) {
      const explicit = opts.explicit_http_config;
      if (opts["@type"] !== HTTP_PROTOCOL_OPTIONS || !explicit) problems.push({ path: `${at}.typed_extension_protocol_options.${key}`, message: "only HttpProtocolOptions with explicit_http_config is supported" });
      else http2 = explicit.http2_protocol_options !== undefined;
    }
    const od = c.outlier_detection;
    return {
      name: c.name,
      edsName: c.eds_cluster_config?.service_name || c.name,
      connectTimeoutMs: ms(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT_MS),
      outlier: od && {
        consecutiveFailures: od.consecutive_5xx?.value ?? DEFAULT_CONSECUTIVE_FAILURES,
        intervalMs: ms(od.interval, DEFAULT_OUTLIER_INTERVAL_MS),
        baseEjectionMs: ms(od.base_ejection_time, DEFAULT_BASE_EJECTION_MS),
        maxEjectionMs: Math.max(ms(od.max_ejection_time, DEFAULT_MAX_EJECTION_MS), ms(od.base_ejection_time, DEFAULT_BASE_EJECTION_MS)),
        maxEjectionPercent: od.max_ejection_percent?.value ?? DEFAULT_MAX_EJECTION_PERCENT,
      },
      healthCheck: hc && {
        intervalMs: ms(hc.interval, 0),
        timeoutMs: ms(hc.timeout, 0),
        unhealthyThreshold: hc.unhealthy_threshold.value,
        healthyThreshold: hc.healthy_threshold.value,
        ...(httpHc ? { http: { path: httpHc.path, host: httpHc.host, expectedStatuses: httpHc.expected_statuses.length ? httpHc.expected_statuses : DEFAULT_EXPECTED_STATUSES } } : {}),
      },
      tlsMatches,
      http2,
    };
  });
}

// ---- ClusterLoadAssignment ----

const claSchema = z.looseObject({
  cluster_name: z.string().min(1),
  endpoints: z
    .array(
      z.looseObject({
        priority: z.number().int().min(0).default(0),
        load_balancing_weight: u32.optional(),
        lb_endpoints: z
          .array(
            z.looseObject({
              endpoint: z.looseObject({ address: socketAddress }),
              health_status: z.string().default("UNKNOWN"),
              metadata: z.looseObject({ filter_metadata: z.record(z.string(), struct).default({}) }).optional(),
              load_balancing_weight: u32.optional(),
            }),
          )
          .default([]),
      }),
    )
    .default([]),
});

export function parseLoadAssignment(raw: unknown, at: string): Parsed<LoadAssignmentSpec> {
  return parseWith(claSchema, raw, at, (cla): LoadAssignmentSpec => ({
    name: cla.cluster_name,
    localities: cla.endpoints.map((l) => ({
      priority: l.priority,
      weight: Math.max(1, l.load_balancing_weight?.value ?? 1),
      endpoints: l.lb_endpoints.map((e) => ({
        address: { host: e.endpoint.address.socket_address.address, port: e.endpoint.address.socket_address.port_value },
        healthy: e.health_status === "HEALTHY" || e.health_status === "UNKNOWN",
        servingCluster: stringFields(e.metadata?.filter_metadata.fedgate).cluster ?? "",
        tlsMatchFields: stringFields(e.metadata?.filter_metadata["envoy.transport_socket_match"]),
      })),
    })),
  }));
}

// ---- Secret ----

const inline = z.looseObject({ inline_string: z.string().min(1) });
const secretSchema = z.looseObject({
  name: z.string().min(1),
  tls_certificate: z.looseObject({ certificate_chain: inline, private_key: inline }).optional(),
  validation_context: z
    .looseObject({
      trusted_ca: inline,
      crl: inline.optional(),
      match_typed_subject_alt_names: z.array(z.looseObject({ san_type: z.string(), matcher: z.looseObject({ prefix: z.string().optional() }) })).default([]),
    })
    .optional(),
});

const SPIFFE_PREFIX = /^spiffe:\/\/([^/]+)\/$/;

export function parseSecret(raw: unknown, at: string): Parsed<SecretSpec> {
  return parseWith(secretSchema, raw, at, (s, problems): SecretSpec => {
    if (s.tls_certificate) return { kind: "certificate", name: s.name, chainPem: s.tls_certificate.certificate_chain.inline_string, keyPem: s.tls_certificate.private_key.inline_string };
    if (s.validation_context) {
      // The trust domain comes from the SPIFFE SAN prefix the control plane pins (`spiffe://<td>/`).
      const sans = s.validation_context.match_typed_subject_alt_names;
      const td = sans.length === 1 && sans[0]!.san_type === "URI" ? SPIFFE_PREFIX.exec(sans[0]!.matcher.prefix ?? "")?.[1] : undefined;
      if (!td) problems.push({ path: `${at}.validation_context`, message: "needs exactly one URI SAN matcher with prefix spiffe://<trust-domain>/" });
      return { kind: "validation", name: s.name, caPem: s.validation_context.trusted_ca.inline_string, trustDomain: td ?? "", crlPem: s.validation_context.crl?.inline_string ?? "" };
    }
    problems.push({ path: at, message: "only tls_certificate and validation_context secrets are supported" });
    return { kind: "validation", name: s.name, caPem: "", trustDomain: "", crlPem: "" };
  });
}
