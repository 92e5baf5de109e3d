import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FederationSnapshotParser, parseFederationSnapshot, XdsInputError, type FederationSnapshotInput } from "../../gateway/internal.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };

type Service = FederationSnapshotInput["services"][number];

/** `count` services named svc-0.., as fresh objects on every call (the controller resends them all). */
function snapshot(count: number, change: (s: Service, i: number) => Service = (s) => s): FederationSnapshotInput {
  const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  const services = Array.from({ length: count }, (_, i) => change({ ...echo, key: `demo/svc-${i}`, name: `svc-${i}`, exports: echo.exports.map((e) => ({ ...e, name: `svc-${i}` })) }, i));
  return { ...base, services };
}

function problemsOf(fn: () => unknown): readonly { path: string; message: string }[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof XdsInputError) return error.problems;
    throw error;
  }
  return [];
}

const parser = suite("FederationSnapshotParser: a service parsed once while its input stays the same");

parser("an unchanged service is the same parsed object in the next snapshot; a changed one is parsed again", () => {
  const p = new FederationSnapshotParser();
  const first = p.parse(snapshot(3));
  const second = p.parse(snapshot(3, (s, i) => (i === 1 ? { ...s, exports: s.exports.map((e) => ({ ...e, sessionAffinity: "ClientIP" as const })) } : s)));
  assert.is(second.services[0], first.services[0]);
  assert.is(second.services[2], first.services[2]);
  assert.is.not(second.services[1], first.services[1]);
  assert.is(second.services[1]?.exports[0]?.sessionAffinity, "ClientIP");
  assert.equal(second, parseFederationSnapshot(snapshot(3, (s, i) => (i === 1 ? { ...s, exports: s.exports.map((e) => ({ ...e, sessionAffinity: "ClientIP" as const })) } : s))));
});

parser("a service dropped from one snapshot is parsed again when it comes back later", () => {
  const p = new FederationSnapshotParser();
  const first = p.parse(snapshot(2));
  p.parse(snapshot(1));
  const third = p.parse(snapshot(2));
  assert.is.not(third.services[1], first.services[1]);
  assert.equal(third.services[1], first.services[1]);
});

parser("every problem is reported, with its path in the whole snapshot, whether its service was cached or not", () => {
  const p = new FederationSnapshotParser();
  p.parse(snapshot(3));
  const bad = { ...snapshot(3, (s, i) => (i === 2 ? { ...s, name: "" } : i === 1 ? { ...s, key: "demo/other" } : s)), self: { cluster: "", region: "r", zone: "z" } };
  const problems = problemsOf(() => p.parse(bad));
  assert.ok(problems.some((x) => x.path === "self.cluster"), JSON.stringify(problems));
  assert.ok(problems.some((x) => x.path === "services.2.name"), JSON.stringify(problems));
  assert.ok(problems.some((x) => x.path === "services[1].key"), JSON.stringify(problems));
  assert.equal(problems, problemsOf(() => parseFederationSnapshot(bad)));
});

parser("a rejected snapshot keeps the cache: the next good one still reuses the last good parse", () => {
  const p = new FederationSnapshotParser();
  const good = p.parse(snapshot(2));
  assert.throws(() => p.parse({ ...snapshot(2), services: "not a list" as unknown as Service[] }), (e: unknown) => e instanceof XdsInputError && e.problems[0]?.path === "services");
  const again = p.parse(snapshot(2));
  assert.is(again.services[0], good.services[0]);
  assert.is(again.services[1], good.services[1]);
});

parser("an input without JSON (a BigInt) is still judged by the schema, not by the cache", () => {
  const p = new FederationSnapshotParser();
  const bad = snapshot(1, (s) => ({ ...s, exports: s.exports.map((e) => ({ ...e, ports: e.ports.map((x) => ({ ...x, port: 10n as unknown as number })) })) }));
  const problems = problemsOf(() => p.parse(bad));
  assert.ok(problems.some((x) => x.path === "services.0.exports.0.ports.0.port"), JSON.stringify(problems));
});

parser.run();
