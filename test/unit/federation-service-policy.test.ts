import { readFileSync } from "node:fs";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { parseServicePolicy, PolicyValidationError, servicePolicySpec, type ParsedServicePolicy, type ServicePolicySpec } from "../../federation/internal.ts";

const object = (spec: unknown, metadata: Record<string, unknown> = {}) => ({
  apiVersion: "multicluster.fedgate.io/v1alpha1",
  kind: "ServiceFederationPolicy",
  metadata: { name: "checkout", namespace: "shop", generation: 1, ...metadata },
  ...(spec === undefined ? {} : { spec }),
});

const FULL_SPEC: ServicePolicySpec = {
  failover: { clusterOrder: ["cluster-b", "cluster-c"], labels: ["topology.kubernetes.io/region", "fedgate.io/cluster"] },
  consumers: ["cluster-b"],
  outlierDetection: { consecutive5xx: 3, intervalMs: 1_000, baseEjectionMs: 5_000, maxEjectionPercent: 50 },
  healthCheck: { intervalMs: 2_000, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1, http: { path: "/healthz", host: "checkout.shop", expectedStatuses: [{ start: 200, end: 300 }] } },
  retries: { attempts: 3, perTryTimeoutMs: 1_000, nextPriority: false },
  timeoutMs: 10_000,
  connectTimeoutMs: 2_000,
  aliases: ["checkout.shop", "checkout:443"],
};

const { consumers: FULL_CONSUMERS, ...FULL_POLICY } = FULL_SPEC;

const valid = suite("ServiceFederationPolicy parser: accepted objects");

const accepted: { name: string; input: unknown; expect: ParsedServicePolicy }[] = [
  { name: "an object without spec is the gateway defaults, for every cluster", input: object(undefined), expect: { policy: {} } },
  { name: "an empty spec is the gateway defaults", input: object({}), expect: { policy: {} } },
  {
    name: "every field maps onto the gateway policy; consumers are split off",
    input: object(FULL_SPEC),
    expect: { policy: FULL_POLICY, ...(FULL_CONSUMERS ? { consumers: FULL_CONSUMERS } : {}) },
  },
  { name: "an empty consumers list exports to no one", input: object({ consumers: [] }), expect: { policy: {}, consumers: [] } },
  { name: "timeoutMs 0 disables the timeout, so any perTryTimeoutMs is fine", input: object({ timeoutMs: 0, retries: { perTryTimeoutMs: 60_000 } }), expect: { policy: { timeoutMs: 0, retries: { perTryTimeoutMs: 60_000 } } } },
  { name: "perTryTimeoutMs equal to the timeout is allowed", input: object({ timeoutMs: 3_000, retries: { perTryTimeoutMs: 3_000 } }), expect: { policy: { timeoutMs: 3_000, retries: { perTryTimeoutMs: 3_000 } } } },
  { name: "a health check timeout under the default interval is allowed", input: object({ healthCheck: { timeoutMs: 4_000 } }), expect: { policy: { healthCheck: { timeoutMs: 4_000 } } } },
  { name: "status and unknown metadata are ignored", input: { ...object({ timeoutMs: 1 }), status: { conditions: [] } }, expect: { policy: { timeoutMs: 1 } } },
];

for (const c of accepted) {
  valid(c.name, () => {
    const parsed = parseServicePolicy(c.input);
    assert.equal(JSON.parse(JSON.stringify(parsed)), JSON.parse(JSON.stringify(c.expect)));
  });
}

valid("round-trips: parse → spec → parse gives the same policy", () => {
  for (const c of accepted) {
    const first = parseServicePolicy(c.input);
    const again = parseServicePolicy(object(servicePolicySpec(first)));
    assert.equal(again, first, c.name);
  }
});

const invalid = suite("ServiceFederationPolicy parser: refused objects list every problem");

const refused: { name: string; input: unknown; problems: string[] }[] = [
  { name: "not an object", input: "nope", problems: [""] },
  { name: "metadata.name is not a Service name", input: object({}, { name: "9lives" }), problems: ["metadata.name"] },
  { name: "duplicate clusterOrder entries", input: object({ failover: { clusterOrder: ["b", "c", "b"] } }), problems: ["spec.failover.clusterOrder[2]"] },
  { name: "duplicate consumers, labels and aliases all reported", input: object({ consumers: ["b", "b"], failover: { labels: ["fedgate.io/cluster", "fedgate.io/cluster"] }, aliases: ["x", "x"] }), problems: ["spec.failover.labels[1]", "spec.consumers[1]", "spec.aliases[1]"] },
  { name: "negative timeout", input: object({ timeoutMs: -1 }), problems: ["spec.timeoutMs"] },
  { name: "perTryTimeoutMs over timeoutMs", input: object({ timeoutMs: 1_000, retries: { perTryTimeoutMs: 2_000 } }), problems: ["spec.retries.perTryTimeoutMs"] },
  { name: "perTryTimeoutMs over the default timeout (the schema cannot see defaults)", input: object({ retries: { perTryTimeoutMs: 20_000 } }), problems: ["spec.retries.perTryTimeoutMs"] },
  { name: "health check timeout over the default interval", input: object({ healthCheck: { timeoutMs: 6_000 } }), problems: ["spec.healthCheck.timeoutMs"] },
  {
    name: "several field problems at once",
    input: object({ retries: { attempts: 11 }, outlierDetection: { maxEjectionPercent: 101, consecutive5xx: 0 }, connectTimeoutMs: 0, failover: { labels: ["rack"] }, consumers: ["Not_A_Label"] }),
    problems: ["spec.failover.labels[0]", "spec.consumers[0]", "spec.outlierDetection.consecutive5xx", "spec.outlierDetection.maxEjectionPercent", "spec.retries.attempts", "spec.connectTimeoutMs"],
  },
  { name: "an unknown field (a typo) is refused, not ignored", input: object({ timeout: 5 }), problems: ["spec"] },
  { name: "a fractional number of milliseconds", input: object({ timeoutMs: 1.5 }), problems: ["spec.timeoutMs"] },
  { name: "a bad alias", input: object({ aliases: ["has space"] }), problems: ["spec.aliases[0]"] },
  { name: "an HTTP health check path that is not absolute", input: object({ healthCheck: { http: { path: "healthz" } } }), problems: ["spec.healthCheck.http.path"] },
  { name: "an HTTP health check status range that ends before it starts", input: object({ healthCheck: { http: { path: "/", expectedStatuses: [{ start: 300, end: 200 }] } } }), problems: ["spec.healthCheck.http.expectedStatuses[0].end"] },
  { name: "an unknown HTTP health check field", input: object({ healthCheck: { http: { path: "/", method: "HEAD" } } }), problems: ["spec.healthCheck.http"] },
];

for (const c of refused) {
  invalid(c.name, () => {
    try {
      parseServicePolicy(c.input);
    } catch (err) {
      assert.instance(err, PolicyValidationError);
      const e = err as PolicyValidationError;
      assert.is(e.code, "FEDGATE_POLICY_INVALID");
      assert.equal(e.problems.map((p) => p.path).sort(), [...c.problems].sort());
      for (const p of e.problems) assert.ok(e.message.includes(p.message), `message carries "${p.message}"`);
      return;
    }
    assert.unreachable("parser accepted the object");
  });
}

invalid("the error names the object", () => {
  assert.throws(() => parseServicePolicy(object({ timeoutMs: -1 })), (err: Error) => err.message.startsWith("invalid ServiceFederationPolicy shop/checkout: spec.timeoutMs:"));
});

/** The CRD's spec schema: the parser must agree with it on every bound, or the two have drifted. */
interface JsonSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
  enum?: string[];
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
}
const crdText = readFileSync(new URL("../../manifests/crds/multicluster.fedgate.io_servicefederationpolicies.yaml", import.meta.url), "utf8");
const crd = JSON.parse(crdText.slice(crdText.indexOf("\n"))) as { spec: { versions: { schema: { openAPIV3Schema: JsonSchema } }[] } };
const specSchema = crd.spec.versions[0]!.schema.openAPIV3Schema.properties!.spec!;

/** A value at the schema's lower or upper bound; arrays hold distinct items. */
function atBound(schema: JsonSchema, bound: "min" | "max"): unknown {
  switch (schema.type) {
    case "integer":
      return bound === "min" ? schema.minimum : schema.maximum;
    case "boolean":
      return bound === "max";
    case "string": {
      // The CRD's string patterns are paths (`^/`) or names: "/" or "a" repeated to the length bound.
      const n = bound === "min" ? (schema.minLength ?? 0) : schema.maxLength!;
      const head = schema.pattern?.startsWith("^/") ? "/" : "";
      return head + "a".repeat(n - head.length);
    }
    case "object":
      return Object.fromEntries(Object.entries(schema.properties ?? {}).map(([k, v]) => [k, atBound(v, bound)]));
    case "array": {
      const n = bound === "min" ? 0 : (schema.maxItems ?? 1);
      const items = schema.items!;
      return Array.from({ length: n }, (_, i) => (items.enum ? items.enum[i] : items.type === "object" ? atBound(items, bound) : `item-${i}`));
    }
    default:
      throw new Error(`no sample for ${JSON.stringify(schema)}`);
  }
}

function leaves(schema: JsonSchema, path: string[] = []): { path: string[]; schema: JsonSchema }[] {
  if (schema.type === "object") return Object.entries(schema.properties ?? {}).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [{ path, schema }];
}

function withValue(spec: unknown, path: string[], value: unknown): unknown {
  const copy = structuredClone(spec) as Record<string, unknown>;
  let at = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string, unknown>;
  at[path.at(-1)!] = value;
  return copy;
}

const drift = suite("ServiceFederationPolicy parser agrees with the CRD schema");

for (const bound of ["min", "max"] as const) {
  drift(`a spec with every field at the CRD's ${bound}imum is accepted and round-trips`, () => {
    const spec = atBound(specSchema, bound);
    const parsed = parseServicePolicy(object(spec));
    assert.equal(servicePolicySpec(parsed), spec);
  });
}

drift("one past each integer bound of the CRD is refused at that field", () => {
  const base = atBound(specSchema, "max");
  const integers = leaves(specSchema).filter((l) => l.schema.type === "integer");
  assert.is(integers.length, 12, "every integer field of the CRD is visited");
  for (const { path, schema } of integers) {
    for (const value of [schema.minimum! - 1, schema.maximum! + 1]) {
      try {
        parseServicePolicy(object(withValue(base, path, value)));
        assert.unreachable(`${path.join(".")}=${value} accepted`);
      } catch (err) {
        assert.instance(err, PolicyValidationError);
        assert.ok((err as PolicyValidationError).problems.some((p) => p.path === `spec.${path.join(".")}`), `${path.join(".")}=${value}: ${(err as Error).message}`);
      }
    }
  }
});

drift("one past each list's maxItems is refused at that field", () => {
  const base = atBound(specSchema, "max");
  const lists = leaves(specSchema).filter((l) => l.schema.type === "array");
  assert.is(lists.length, 5);
  for (const { path, schema } of lists) {
    const tooMany = Array.from({ length: schema.maxItems! + 1 }, (_, i) => (schema.items!.type === "object" ? atBound(schema.items!, "max") : `item-${i}`));
    assert.throws(() => parseServicePolicy(object(withValue(base, path, tooMany))), (err: Error) => err instanceof PolicyValidationError && err.problems.some((p) => p.path === `spec.${path.join(".")}`), path.join("."));
  }
});

valid.run();
invalid.run();
drift.run();
