import { MCS_GROUP, MCS_VERSION } from "../../federation/index.ts";
import type { BenchMember } from "./bench-clusterset.ts";

/**
 * Creates what a user creates to export a service: the Service, one
 * EndpointSlice with two ready endpoints, then the ServiceExport. Resolves
 * with performance.now() at the instant the ServiceExport create call's
 * response (201) has been received and parsed.
 */
export async function createExport(m: BenchMember, namespace: string, name: string): Promise<number> {
  await m.core.createNamespacedService({ namespace, body: { metadata: { name }, spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }] } } });
  await m.discovery.createNamespacedEndpointSlice({
    namespace,
    body: {
      metadata: { name: `${name}-1`, labels: { "kubernetes.io/service-name": name } },
      addressType: "IPv4",
      endpoints: ["10.1.0.1", "10.1.0.2"].map((ip) => ({ addresses: [ip], zone: "zone-a", conditions: { ready: true } })),
      ports: [{ name: "http", port: 8080, protocol: "TCP" }],
    },
  });
  await m.custom.createNamespacedCustomObject({
    group: MCS_GROUP,
    version: MCS_VERSION,
    namespace,
    plural: "serviceexports",
    body: { apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceExport", metadata: { name } },
  });
  return performance.now();
}

/** Runs `task(i)` for i in [0, count) with at most `limit` in flight. */
export async function limited(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
