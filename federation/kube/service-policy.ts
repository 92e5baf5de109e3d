import { z } from "zod";
import { ValidationError, type Problem } from "../../common/index.ts";
import { DEFAULT_SERVICE_POLICY, LOCALITY_LABELS, servicePolicySchema, type ServicePolicyInput } from "../../gateway/index.ts";

/**
 * fedgate's ServiceFederationPolicy (manifests/crds): one per exported
 * Service, named after it. The apiserver enforces the CRD schema; this parser
 * re-checks it (the object may come from an older CRD) and adds the checks
 * that need the gateway's defaults, collecting every problem.
 */

export const POLICY_GROUP = "multicluster.fedgate.io";
export const POLICY_VERSION = "v1alpha1";
export const POLICY_KIND = "ServiceFederationPolicy";
export const POLICY_PLURAL = "servicefederationpolicies";

/** What the xDS translation consumes, plus the clusters an export is limited to. */
export interface ParsedServicePolicy {
  policy: ServicePolicyInput;
  /** Absent: every cluster of the ClusterSet may import the Service. */
  consumers?: string[];
}

export class PolicyValidationError extends ValidationError {
  constructor(subject: string, problems: readonly Problem[]) {
    super("FEDGATE_POLICY_INVALID", subject, problems);
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SERVICE_NAME = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const MAX_MS = 3_600_000;

const clusterName = z.string().min(1).max(63).regex(DNS_LABEL, "must be a cluster name (an RFC-1123 DNS label)");
const ms = (min: number, max: number) => z.number().int().min(min).max(max);
const count = (min: number, max: number) => z.number().int().min(min).max(max);

const specSchema = z.strictObject({
  failover: z
    .strictObject({
      clusterOrder: z.array(clusterName).max(255).optional(),
      labels: z.array(z.enum(LOCALITY_LABELS)).max(LOCALITY_LABELS.length).optional(),
    })
    .optional(),
  consumers: z.array(clusterName).max(255).optional(),
  outlierDetection: z
    .strictObject({
      consecutive5xx: count(1, 1_000).optional(),
      intervalMs: ms(1, MAX_MS).optional(),
      baseEjectionMs: ms(1, MAX_MS).optional(),
      maxEjectionPercent: count(0, 100).optional(),
    })
    .optional(),
  healthCheck: z
    .strictObject({
      intervalMs: ms(1, MAX_MS).optional(),
      timeoutMs: ms(1, MAX_MS).optional(),
      unhealthyThreshold: count(1, 100).optional(),
      healthyThreshold: count(1, 100).optional(),
      // Path and host patterns and start < end are the gateway schema's (the last guard below).
      http: z
        .strictObject({
          path: z.string().min(1).max(1_024),
          host: z.string().min(1).max(253).optional(),
          expectedStatuses: z
            .array(z.strictObject({ start: count(100, 599), end: count(101, 600) }))
            .max(16)
            .optional(),
        })
        .optional(),
    })
    .optional(),
  retries: z
    .strictObject({
      attempts: count(0, 10).optional(),
      perTryTimeoutMs: ms(1, MAX_MS).optional(),
      nextPriority: z.boolean().optional(),
    })
    .optional(),
  timeoutMs: ms(0, MAX_MS).optional(),
  connectTimeoutMs: ms(1, 600_000).optional(),
  aliases: z
    .array(z.string().min(1).max(253).regex(/^[A-Za-z0-9._:-]+$/, "must be a listener name ([A-Za-z0-9._:-])"))
    .max(16)
    .optional(),
});

export type ServicePolicySpec = z.output<typeof specSchema>;

const objectSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string().max(63).regex(SERVICE_NAME, "must be the name of a Service (an RFC-1035 DNS label)"),
    namespace: z.string().min(1).max(63),
  }),
  spec: specSchema.default({}),
});

/** Just enough to name the object in an error, whatever else is wrong with it. */
const objectId = z.object({ metadata: z.object({ namespace: z.string().optional(), name: z.string().optional() }) });

/** Paths as the apiserver writes them (`spec.consumers[0]`), so the condition and `kubectl` agree. */
const zodProblems = (error: z.ZodError): Problem[] =>
  error.issues.map((i) => ({ path: i.path.map((s, n) => (typeof s === "number" ? `[${s}]` : `${n ? "." : ""}${String(s)}`)).join(""), message: i.message }));

function duplicates(path: string, values: readonly string[] | undefined): Problem[] {
  const seen = new Set<string>();
  const problems: Problem[] = [];
  values?.forEach((v, i) => {
    if (seen.has(v)) problems.push({ path: `${path}[${i}]`, message: `duplicate value "${v}"` });
    seen.add(v);
  });
  return problems;
}

/** The gateway's defaults for a health check that sets only some fields. */
const HEALTH_CHECK_DEFAULTS = servicePolicySchema.shape.healthCheck.unwrap().parse({});

/** Checks that need the gateway's defaults for fields the object leaves out. */
function crossFieldProblems(spec: ServicePolicySpec): Problem[] {
  const problems = [
    ...duplicates("spec.failover.clusterOrder", spec.failover?.clusterOrder),
    ...duplicates("spec.failover.labels", spec.failover?.labels),
    ...duplicates("spec.consumers", spec.consumers),
    ...duplicates("spec.aliases", spec.aliases),
  ];
  const timeoutMs = spec.timeoutMs ?? DEFAULT_SERVICE_POLICY.timeoutMs;
  const perTry = spec.retries?.perTryTimeoutMs;
  if (perTry !== undefined && timeoutMs !== 0 && perTry > timeoutMs) {
    const source = spec.timeoutMs === undefined ? `the default timeoutMs ${timeoutMs}` : `timeoutMs ${timeoutMs}`;
    problems.push({ path: "spec.retries.perTryTimeoutMs", message: `${perTry} exceeds ${source}` });
  }
  if (spec.healthCheck) {
    const intervalMs = spec.healthCheck.intervalMs ?? HEALTH_CHECK_DEFAULTS.intervalMs;
    const hcTimeoutMs = spec.healthCheck.timeoutMs ?? HEALTH_CHECK_DEFAULTS.timeoutMs;
    if (hcTimeoutMs > intervalMs) problems.push({ path: "spec.healthCheck.timeoutMs", message: `${hcTimeoutMs} exceeds intervalMs ${intervalMs}${spec.healthCheck.intervalMs === undefined ? " (the default)" : ""}` });
  }
  return problems;
}

function toPolicy(spec: ServicePolicySpec): ParsedServicePolicy {
  const { consumers, ...policy } = spec;
  return { policy, ...(consumers ? { consumers } : {}) };
}

/**
 * Parses a ServiceFederationPolicy object (as read from the apiserver) into
 * the gateway's policy input and its consumers; throws `PolicyValidationError`
 * listing every problem.
 */
export function parseServicePolicy(object: unknown): ParsedServicePolicy {
  const result = objectSchema.safeParse(object);
  const id = objectId.safeParse(object);
  const subject = `invalid ${POLICY_KIND}${id.success ? ` ${id.data.metadata.namespace ?? ""}/${id.data.metadata.name ?? ""}` : ""}`;
  if (!result.success) throw new PolicyValidationError(subject, zodProblems(result.error));
  const { spec } = result.data;
  const problems = crossFieldProblems(spec);
  if (problems.length) throw new PolicyValidationError(subject, problems);
  const parsed = toPolicy(spec);
  // Last guard: the gateway itself must accept what we hand it.
  const gateway = servicePolicySchema.safeParse(parsed.policy);
  if (!gateway.success) throw new PolicyValidationError(subject, zodProblems(gateway.error).map((p) => ({ ...p, path: `spec.${p.path}` })));
  return parsed;
}

/** The spec that parses back to `parsed` (for tools that write policies). */
export function servicePolicySpec(parsed: ParsedServicePolicy): ServicePolicySpec {
  return specSchema.parse({ ...parsed.policy, ...(parsed.consumers ? { consumers: parsed.consumers } : {}) });
}
