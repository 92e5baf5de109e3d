import { suite } from "uvu";
import * as assert from "uvu/assert";
import { exportedShape, mergeExports, type ClusterExport } from "../../federation/internal.ts";

function exp(cluster: string, createdAt: string, extra: Partial<ClusterExport> = {}): ClusterExport {
  return {
    cluster,
    revision: 1,
    namespace: "shop",
    name: "web",
    ports: [{ name: "http", protocol: "TCP", port: 80 }],
    type: "ClusterSetIP",
    sessionAffinity: "None",
    exportCreatedAt: createdAt,
    readyEndpoints: [],
    gateway: { host: "gw", port: 15443 },
    ...extra,
  };
}

const merge = suite("MCS merge and conflict resolution");

const cases: { name: string; exports: ClusterExport[]; expect: { type: string; ports: string[]; affinity: string; conflicts: [string, string[]][] } }[] = [
  {
    name: "identical exports merge without conflict",
    exports: [exp("a", "2026-01-01T00:00:00Z"), exp("b", "2026-01-02T00:00:00Z")],
    expect: { type: "ClusterSetIP", ports: ["http:TCP/80"], affinity: "None", conflicts: [] },
  },
  {
    name: "ports are the union, by name",
    exports: [exp("a", "2026-01-01T00:00:00Z"), exp("b", "2026-01-02T00:00:00Z", { ports: [{ name: "http", protocol: "TCP", port: 80 }, { name: "grpc", protocol: "TCP", port: 9090 }] })],
    expect: { type: "ClusterSetIP", ports: ["http:TCP/80", "grpc:TCP/9090"], affinity: "None", conflicts: [] },
  },
  {
    name: "a port with the same name and another number conflicts; the oldest wins",
    exports: [exp("a", "2026-01-01T00:00:00Z"), exp("b", "2026-01-02T00:00:00Z", { ports: [{ name: "http", protocol: "TCP", port: 8080 }] })],
    expect: { type: "ClusterSetIP", ports: ["http:TCP/80"], affinity: "None", conflicts: [["b", ["PortConflict"]], ["a", ["PortConflict"]]] },
  },
  {
    name: "a type conflict keeps the oldest export's type",
    exports: [exp("b", "2025-12-01T00:00:00Z", { type: "Headless" }), exp("a", "2026-01-01T00:00:00Z")],
    expect: { type: "Headless", ports: ["http:TCP/80"], affinity: "None", conflicts: [["a", ["TypeConflict"]], ["b", ["TypeConflict"]]] },
  },
  {
    name: "several reasons at once",
    exports: [exp("a", "2026-01-01T00:00:00Z"), exp("b", "2026-01-02T00:00:00Z", { type: "Headless", sessionAffinity: "ClientIP" })],
    expect: { type: "ClusterSetIP", ports: ["http:TCP/80"], affinity: "None", conflicts: [["b", ["TypeConflict", "SessionAffinityConflict"]], ["a", ["SessionAffinityConflict", "TypeConflict"]]] },
  },
];

for (const c of cases) {
  merge(c.name, () => {
    const merged = mergeExports(c.exports);
    assert.ok(merged);
    assert.is(merged?.type, c.expect.type);
    assert.equal(merged?.ports.map((p) => `${p.name}:${p.protocol}/${p.port}`), c.expect.ports);
    assert.is(merged?.sessionAffinity, c.expect.affinity);
    assert.equal([...(merged?.conflicts ?? [])], c.expect.conflicts);
  });
}

merge("no exports merge to nothing", () => {
  assert.is(mergeExports([]), undefined);
});

merge("a Service's shape: Headless for clusterIP None, ready endpoints counted per zone", () => {
  const shape = exportedShape(
    { clusterIP: "None", ports: [{ port: 53, protocol: "UDP", name: "dns" }], sessionAffinity: "ClientIP", sessionAffinityTimeoutSeconds: 60 },
    [{ ready: true, zone: "z1" }, { ready: false, zone: "z1" }, { ready: true, zone: "z2" }, { ready: true, zone: "z1" }],
  );
  assert.equal(shape, {
    ports: [{ name: "dns", protocol: "UDP", port: 53 }],
    type: "Headless",
    sessionAffinity: "ClientIP",
    sessionAffinityTimeoutSeconds: 60,
    readyEndpoints: [{ zone: "z1", ready: 2 }, { zone: "z2", ready: 1 }],
  });
});

merge.run();
