import type * as k8s from "@kubernetes/client-node";
import type { LocalEndpoint } from "../../gateway/index.ts";

/**
 * A Service's own backends as the data plane needs them: one entry per
 * address and port, with the Service port it serves and its zone. Slice ports
 * are matched to Service ports by name, as the EndpointSlice controller names
 * them; FQDN slices and unmatched ports are skipped.
 */
export function localEndpointsOf(service: k8s.V1Service, slices: readonly k8s.V1EndpointSlice[]): LocalEndpoint[] {
  const servicePorts = new Map((service.spec?.ports ?? []).map((p) => [p.name ?? "", p.port]));
  const endpoints: LocalEndpoint[] = [];
  for (const slice of slices) {
    if (slice.addressType === "FQDN") continue;
    for (const p of slice.ports ?? []) {
      const servicePort = servicePorts.get(p.name ?? "");
      if (servicePort === undefined || p.port === undefined) continue;
      for (const e of slice.endpoints) {
        // Terminating endpoints report ready=false; an absent condition means ready (API contract).
        const ready = e.conditions?.ready !== false;
        for (const address of e.addresses) endpoints.push({ address, port: p.port, zone: e.zone ?? "", ready, servicePort });
      }
    }
  }
  return endpoints.sort((a, b) => a.address.localeCompare(b.address) || a.port - b.port);
}
