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

export type ListenerSpec = ImportListenerSpec | ExportListenerSpec;

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
}

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
  typed_config: typed.and(z.looseObject({ cluster: z.string().optional(), weighted_clusters: z.unknown().optional() })),
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
  typed_extension_protocol_options: z.unknown().optional(),
});

export function parseCluster(raw: unknown, at: string): Parsed<ClusterSpec> {
  return parseWith(clusterSchema, raw, at, (c, problems): ClusterSpec => {
    if (c.type !== "EDS") problems.push({ path: `${at}.type`, message: `only EDS clusters are supported, got ${c.type}` });
    if (c.lb_policy !== "ROUND_ROBIN") problems.push({ path: `${at}.lb_policy`, message: `only ROUND_ROBIN is supported, got ${c.lb_policy}` });
    if (c.transport_socket !== undefined) problems.push({ path: `${at}.transport_socket`, message: "use transport_socket_matches (per-endpoint TLS)" });
    const hc = c.health_checks[0];
    if (hc && (!hc.tcp_health_check || hc.tcp_health_check.send !== undefined || hc.tcp_health_check.receive !== undefined)) {
      problems.push({ path: `${at}.health_checks[0]`, message: "only connect-only tcp_health_check is supported" });
    }
    const tlsMatches = c.transport_socket_matches.map((m, i) => {
      if (m.transport_socket.typed_config["@type"] !== UPSTREAM_TLS) problems.push({ path: `${at}.transport_socket_matches[${i}]`, message: "only UpstreamTlsContext is supported" });
      const ctx = m.transport_socket.typed_config.common_tls_context;
      return { match: stringFields(m.match), sni: m.transport_socket.typed_config.sni, tls: { certSecret: ctx.tls_certificate_sds_secret_configs[0]!.name, bundleSecret: ctx.validation_context_sds_secret_config.name } };
    });
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
      healthCheck: hc && { intervalMs: ms(hc.interval, 0), timeoutMs: ms(hc.timeout, 0), unhealthyThreshold: hc.unhealthy_threshold.value, healthyThreshold: hc.healthy_threshold.value },
      tlsMatches,
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
