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
  healthCheck: { intervalMs: 2_000, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1 },
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
    problems: ["spec.failover.labels.0", "spec.consumers.0", "spec.outlierDetection.consecutive5xx", "spec.outlierDetection.maxEjectionPercent", "spec.retries.attempts", "spec.connectTimeoutMs"],
  },
  { name: "an unknown field (a typo) is refused, not ignored", input: object({ timeout: 5 }), problems: ["spec"] },
  { name: "a fractional number of milliseconds", input: object({ timeoutMs: 1.5 }), problems: ["spec.timeoutMs"] },
  { name: "a bad alias", input: object({ aliases: ["has space"] }), problems: ["spec.aliases.0"] },
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

valid.run();
invalid.run();
