import { suite } from "uvu";
import * as assert from "uvu/assert";
import { gatewayCounters, shiftAfter, type LoadSample } from "../../drill/index.ts";

const shift = suite("drill: how traffic moved after a fault");

const served = (at: number, cluster: string): LoadSample => ({ at, servedBy: `${cluster}/echo-1` });
const failed = (at: number, failure: LoadSample["failure"]): LoadSample => ({ at, failure, error: `failed at ${at}` });

const cases: { name: string; samples: LoadSample[]; from: number; target: string; expect: Partial<ReturnType<typeof shiftAfter>> }[] = [
  {
    name: "settles at the first target reply after the last reply from elsewhere",
    samples: [served(5, "a"), served(12, "a"), served(15, "b"), served(18, "a"), served(20, "b"), served(25, "b")],
    from: 10,
    target: "b",
    expect: { requests: 5, firstOnTargetMs: 5, settledMs: 10, servedBy: { a: 2, b: 3 }, failedNewConnections: 0 },
  },
  {
    name: "a failure counts as not settled, and is kept with its message",
    samples: [served(11, "b"), failed(14, "new-connection"), failed(15, "in-flight"), served(16, "b")],
    from: 10,
    target: "b",
    expect: { firstOnTargetMs: 1, settledMs: 6, failedNewConnections: 1, failedInFlight: 1, errors: ["failed at 14", "failed at 15"] },
  },
  {
    name: "never on the target: neither first nor settled",
    samples: [served(11, "a"), served(12, "a")],
    from: 10,
    target: "b",
    expect: { firstOnTargetMs: undefined, settledMs: undefined, servedBy: { a: 2 } },
  },
  {
    name: "already on the target from the start: settled at the first reply",
    samples: [served(13, "b"), served(14, "b")],
    from: 10,
    target: "b",
    expect: { firstOnTargetMs: 3, settledMs: 3 },
  },
  {
    name: "a last reply from elsewhere leaves it unsettled",
    samples: [served(11, "b"), served(12, "a")],
    from: 10,
    target: "b",
    expect: { firstOnTargetMs: 1, settledMs: undefined },
  },
];

for (const c of cases) {
  shift(c.name, () => {
    const result = shiftAfter(c.samples, c.from, c.target);
    for (const [key, value] of Object.entries(c.expect)) assert.equal(result[key as keyof typeof result], value, key);
  });
}

shift("sums every series of the gateway's counters from the Prometheus text", () => {
  const text = [
    "# TYPE fedgate_gateway_failovers_total counter",
    'fedgate_gateway_failovers_total{upstream="x"} 3',
    'fedgate_gateway_failovers_total{upstream="y"} 2',
    "fedgate_gateway_upstream_connect_failures_total 7",
    'fedgate_gateway_outlier_ejections_total_other{a="b"} 100',
  ].join("\n");
  assert.equal(gatewayCounters(text), { connectFailures: 7, failovers: 5, ejections: 0 });
});

shift.run();
