import { z } from "zod";
import type { MergedService, ClusterView } from "../../federation/index.ts";
import type { Problem } from "../../common/index.ts";
import { XdsInputError } from "./errors.ts";
import { exactNumbers } from "./resource-validation.ts";

/**
 * The xDS server's input: the exchange's merged view, this cluster's own
 * backends, per-service policy and the gateway's TLS material. Parsed once with
 * zod into a frozen object; the controller builds it, the server never reads
 * Kubernetes or NATS itself.
 */

const name = z.string().min(1).max(253);
const port = z.number().int().min(1).max(65_535);
const locality = z.string().max(63);

const servicePort = z.object({
  name: z.string().max(63).optional(),
  protocol: z.enum(["TCP", "UDP", "SCTP"]),
  port,
  appProtocol: z.string().max(256).optional(),
});

const clusterExport = z.object({
  cluster: name,
  namespace: name,
  name,
  ports: z.array(servicePort).max(100),
  type: z.enum(["ClusterSetIP", "Headless"]),
  sessionAffinity: z.enum(["None", "ClientIP"]),
  readyEndpoints: z.array(z.object({ zone: locality, ready: z.number().int().min(0) })).max(64),
  gateway: z.object({ host: name, port }),
  consumers: z.array(name).optional(),
});

const mergedService = z.object({
  key: z.string().regex(/^[a-z0-9-]+\/[a-z0-9-]+$/, "must be <namespace>/<name>"),
  namespace: name,
  name,
  exports: z.array(clusterExport).min(1).readonly(),
});

const clusterView = z.object({
  name,
  registration: z
    .looseObject({
      region: locality,
      zones: z.array(z.string()),
      network: z.string().max(63),
      gatewayAddresses: z.array(z.object({ host: name, port })),
      identity: z.string(),
    })
    .optional(),
  leaseLive: z.boolean(),
  stale: z.boolean(),
});

export const localEndpointSchema = z.object({
  address: name,
  port,
  zone: locality,
  ready: z.boolean(),
  /** The service port this backend serves; absent: every port of the service. */
  servicePort: port.optional(),
});

/** Locality labels a failover preference may match on, like Istio's `failoverPriority`. */
export const LOCALITY_LABELS = ["topology.kubernetes.io/region", "topology.kubernetes.io/zone", "fedgate.io/cluster", "fedgate.io/network"] as const;
export type LocalityLabel = (typeof LOCALITY_LABELS)[number];

/** HTTP statuses `start` (inclusive) to `end` (exclusive), as Envoy's `expected_statuses`. */
export const statusRangeSchema = z
  .object({ start: z.number().int().min(100).max(599), end: z.number().int().min(101).max(600) })
  .refine((r) => r.start < r.end, { message: "start must be below end (end is exclusive)", path: ["end"] });

/** An HTTP health check: GET `path` on each local endpoint; a status in `expectedStatuses` (default: 200) passes. */
export const httpHealthCheckSchema = z.object({
  path: z.string().min(1).max(1_024).regex(/^\/[\x21-\x7e]*$/, "must be an absolute path without spaces or control characters"),
  /** The Host header; absent: the service's clusterset name, as requests through the gateway carry it. */
  host: z.string().min(1).max(253).regex(/^[A-Za-z0-9.:[\]-]+$/, "must be a host name, with an optional :port").optional(),
  expectedStatuses: z.array(statusRangeSchema).max(16).default([]),
});

export const servicePolicySchema = z.object({
  failover: z
    .object({
      /** Peer clusters to prefer, in order, after the local cluster. */
      clusterOrder: z.array(name).max(255).default([]),
      /** Istio `failoverPriority`: P0 matches all N labels of the receiving cluster, P1 the first N-1, ... */
      labels: z.array(z.enum(LOCALITY_LABELS)).max(LOCALITY_LABELS.length).default(["topology.kubernetes.io/region", "topology.kubernetes.io/zone"]),
    })
    .prefault({}),
  /** Envoy's defaults (REFERENCE §2), with failover-friendly ejection: without it, failover never triggers on 5xx. */
  outlierDetection: z
    .object({
      consecutive5xx: z.number().int().min(1).max(1_000).default(5),
      intervalMs: z.number().int().min(1).max(3_600_000).default(10_000),
      baseEjectionMs: z.number().int().min(1).max(3_600_000).default(30_000),
      maxEjectionPercent: z.number().int().min(0).max(100).default(100),
    })
    .prefault({}),
  /** Active health checks for gateway data planes (proxyless gRPC ignores them): TCP connects, or HTTP GETs with `http`. */
  healthCheck: z
    .object({
      intervalMs: z.number().int().min(1).max(3_600_000).default(5_000),
      timeoutMs: z.number().int().min(1).max(3_600_000).default(1_000),
      unhealthyThreshold: z.number().int().min(1).max(100).default(3),
      healthyThreshold: z.number().int().min(1).max(100).default(1),
      http: httpHealthCheckSchema.optional(),
    })
    .optional(),
  retries: z
    .object({
      attempts: z.number().int().min(0).max(10).default(2),
      perTryTimeoutMs: z.number().int().min(1).max(3_600_000).optional(),
      /** Retry the next attempt on another priority (Envoy `previous_priorities`). */
      nextPriority: z.boolean().default(true),
    })
    .prefault({}),
  /** Request timeout for L7 imports; 0 disables it. */
  timeoutMs: z.number().int().min(0).max(3_600_000).default(15_000),
  connectTimeoutMs: z.number().int().min(1).max(600_000).default(5_000),
  /** Extra listener names proxyless gRPC clients may dial (`xds:///<alias>`). */
  aliases: z.array(z.string().min(1).max(253).regex(/^[A-Za-z0-9._:-]+$/)).max(16).default([]),
});

export type ServicePolicyInput = z.input<typeof servicePolicySchema>;
export type ServicePolicy = z.output<typeof servicePolicySchema>;
export type HttpHealthCheck = z.output<typeof httpHealthCheckSchema>;

/** The gateway port the controller allocated to one imported service port (what the derived EndpointSlice points at). */
export const importPortSchema = z.object({ port, gatewayPort: port });
export type ImportPort = z.output<typeof importPortSchema>;

export const DEFAULT_SERVICE_POLICY: ServicePolicy = Object.freeze(servicePolicySchema.parse({}));

export const federationSnapshotSchema = z.object({
  self: z.object({ cluster: name, region: locality, zone: locality, network: z.string().max(63).default("") }),
  services: z.array(mergedService),
  clusters: z.array(clusterView),
  localEndpoints: z.map(z.string(), z.array(localEndpointSchema)).default(new Map()),
  policies: z.map(z.string(), servicePolicySchema).default(new Map()),
  /**
   * Per service (`<namespace>/<name>`), where its import listeners listen. A
   * service port without an allocation is listened on at its own number.
   */
  importPorts: z.map(z.string(), z.array(importPortSchema).max(100)).default(new Map()),
  tls: z.object({
    trustDomain: z.string().min(1).max(253),
    gatewayCertChainPem: z.string().includes("-----BEGIN CERTIFICATE-----", { message: "must hold a PEM certificate" }),
    gatewayKeyPem: z.string().includes("PRIVATE KEY-----", { message: "must hold a PEM private key" }),
    trustBundlePems: z.array(z.string().includes("-----BEGIN CERTIFICATE-----")).min(1),
    /** Root-signed revocation lists (PEM `X509 CRL` blocks) the exchange installed; "" when none. */
    revocationsPem: z.string().refine((s) => s === "" || s.includes("-----BEGIN X509 CRL-----"), "must hold PEM X509 CRL blocks").default(""),
  }),
  /** How proxyless gRPC clients secure their connections (gRFC A29: bootstrap certificate providers). */
  proxyless: z
    .object({
      mtls: z.boolean().default(false),
      identityProvider: z.string().min(1).default("fedgate-identity"),
      caProvider: z.string().min(1).default("fedgate-ca"),
    })
    .prefault({}),
});

export type FederationSnapshotInput = z.input<typeof federationSnapshotSchema>;
export type FederationSnapshot = Readonly<z.output<typeof federationSnapshotSchema>>;
export type LocalEndpoint = z.output<typeof localEndpointSchema>;
export type SnapshotService = z.output<typeof mergedService>;

/** Compile-time proof that the exchange's own types feed the schema unchanged. */
export const viewFitsSchema = {
  service: (s: MergedService): z.input<typeof mergedService> => s,
  cluster: (c: ClusterView): z.input<typeof clusterView> => c,
};

/** The snapshot around its services, which `FederationSnapshotParser` parses one by one. */
const snapshotShellSchema = federationSnapshotSchema.extend({ services: z.array(z.unknown()) });

/**
 * Parses snapshots, collecting every problem (throws `XdsInputError`). A
 * merged service whose input is the same as in the previous snapshot (same
 * JSON) is not parsed again: its parsed object is reused, so the snapshots
 * share it. The controller resends every service on each change, and parsing
 * 200 of them was the largest heap allocation of an export's push (≈ 2 MB of
 * zod work per snapshot, most of it surviving into the old generation;
 * bench/xds-push.ts, BENCHMARKS.md). Only services that parsed are kept, for
 * one snapshot after their last use; a rejected snapshot changes nothing.
 */
export class FederationSnapshotParser {
  private previous = new Map<string, SnapshotService>();

  parse(input: FederationSnapshotInput): FederationSnapshot {
    const shell = snapshotShellSchema.safeParse(input);
    const problems: Problem[] = shell.success ? [] : zodProblems(shell.error);
    const current = new Map<string, SnapshotService>();
    const services: SnapshotService[] = [];
    // Services are parsed even when the rest is bad, so every problem is reported at once.
    const raws: unknown = shell.success ? shell.data.services : input.services;
    (Array.isArray(raws) ? raws : []).forEach((raw: unknown, i) => {
      const key = jsonKey(raw);
      let service = key === undefined ? undefined : (current.get(key) ?? this.previous.get(key));
      if (!service) {
        const result = mergedService.safeParse(raw);
        if (!result.success) {
          problems.push(...zodProblems(result.error, ["services", i]));
          return;
        }
        service = result.data;
      }
      if (key !== undefined) current.set(key, service);
      services.push(service);
      if (service.key !== `${service.namespace}/${service.name}`) problems.push({ path: `services[${i}].key`, message: `must equal ${service.namespace}/${service.name}` });
    });
    if (!shell.success || problems.length) throw new XdsInputError(problems);
    this.previous = current;
    return Object.freeze({ ...shell.data, services });
  }
}

/** The cache key of a service's input; undefined when it has no JSON (a BigInt, a cycle): zod says what is wrong with it. */
function jsonKey(raw: unknown): string | undefined {
  try {
    return JSON.stringify(raw, exactNumbers);
  } catch (error) {
    if (error instanceof TypeError) return undefined;
    throw error;
  }
}

/** Parses one snapshot, collecting every problem; throws `XdsInputError`. */
export function parseFederationSnapshot(input: FederationSnapshotInput): FederationSnapshot {
  return new FederationSnapshotParser().parse(input);
}

/** `at`: where the parsed value sits in a larger input, prefixed to every path. */
export function zodProblems(error: z.ZodError, at: readonly PropertyKey[] = []): Problem[] {
  return error.issues.map((issue) => ({ path: [...at, ...issue.path].map(String).join("."), message: issue.message }));
}
