import { suite } from "uvu";
import * as assert from "uvu/assert";
import { EncodedResourceCache, failoverTier, localityPriorities, parseFederationSnapshot, ProtoRegistry, translate, validateAndEncode, type FederationSnapshotInput, type LocalityPlace } from "../../gateway/internal.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const CLA = "outbound|50051||echo.demo.svc.clusterset.local";
const registry = ProtoRegistry.load();

interface Group {
  locality: { region: string; zone: string; sub_zone: string };
  priority: number;
  load_balancing_weight: { value: number };
  lb_endpoints: { health_status: string; endpoint: { address: { socket_address: { address: string; port_value: number } } } }[];
}

function claOf(input: FederationSnapshotInput, flavour: "gateway" | "proxyless" = "proxyless"): Group[] {
  const t = translate(parseFederationSnapshot(input), flavour);
  const cla = t.resources.endpoint.get(CLA)?.message as { endpoints: Group[] } | undefined;
  return cla?.endpoints ?? [];
}

/** Three peers: b (same region r1), c (r2), d (r1, zone z1 like us). */
function threePeers(policy: object = {}): FederationSnapshotInput {
  const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  const exp = (cluster: string, port: number, zone: string, ready: number) => ({ ...echo.exports[0]!, cluster, gateway: { host: "127.0.0.1", port }, readyEndpoints: [{ zone, ready }] });
  const reg = (name: string, region: string) => ({
    name,
    registration: { region, zones: [], network: "n1", gatewayAddresses: [{ host: "127.0.0.1", port: 1 }], identity: `spiffe://fedgate.test/cluster/${name}/gateway` },
    leaseLive: true,
    stale: false,
  });
  return {
    ...base,
    services: [{ ...echo, exports: [echo.exports[0]!, exp("b", 7001, "z9", 3), exp("c", 7002, "z1", 2), exp("d", 7003, "z1", 0)] }],
    clusters: [{ name: "a", leaseLive: true, stale: false }, reg("b", "r1"), reg("c", "r2"), reg("d", "r1")],
    policies: new Map([["demo/echo", policy]]),
  };
}

const priority = suite("locality priority relative to the receiving cluster");

priority("puts the local cluster first, then failoverPriority label matches, then the rest", () => {
  const groups = claOf(threePeers());
  const bySub = Object.fromEntries(groups.map((g) => [g.locality.sub_zone, g.priority]));
  // labels default [region, zone]: a local (0); d matches r1+z1 (1); b matches r1 (2); c matches nothing (3).
  assert.equal(bySub, { a: 0, d: 1, b: 2, c: 3 });
});

priority("an explicit cluster order wins over label matching", () => {
  const groups = claOf(threePeers({ failover: { clusterOrder: ["c"] } }));
  const bySub = Object.fromEntries(groups.map((g) => [g.locality.sub_zone, g.priority]));
  assert.equal(bySub, { a: 0, c: 1, d: 2, b: 3 });
});

priority("compacts tiers so priorities have no gaps", () => {
  const self: LocalityPlace = { cluster: "a", region: "r1", zone: "z1", network: "n" };
  const groups = [self, { cluster: "x", region: "r9", zone: "z9", network: "n" }];
  assert.is(failoverTier(self, groups[1]!, { clusterOrder: ["q", "r"], labels: ["topology.kubernetes.io/region"] }), 4);
  assert.equal(localityPriorities(self, groups, { clusterOrder: ["q", "r"], labels: ["topology.kubernetes.io/region"] }), [0, 1]);
});

priority("weights localities by ready endpoints and marks a peer with none ready unhealthy", () => {
  const groups = claOf(threePeers());
  const b = groups.find((g) => g.locality.sub_zone === "b");
  const d = groups.find((g) => g.locality.sub_zone === "d");
  assert.is(b?.load_balancing_weight.value, 3);
  assert.is(b?.lb_endpoints[0]?.health_status, "HEALTHY");
  assert.equal(b?.locality, { region: "r1", zone: "z9", sub_zone: "b" });
  assert.is(d?.load_balancing_weight.value, 1);
  assert.is(d?.lb_endpoints[0]?.health_status, "UNHEALTHY");
});

priority("drops a stale peer's endpoints", () => {
  const input = threePeers();
  const stale = { ...input, clusters: input.clusters.map((c) => (c.name === "c" ? { ...c, stale: true } : c)) };
  assert.not.ok(claOf(stale).some((g) => g.locality.sub_zone === "c"));
});

priority("without local endpoints the first peer becomes priority 0", () => {
  const input = echoSnapshot({ localPort: undefined, remotePort: 7001, tls: TLS });
  const groups = claOf(input);
  assert.is(groups.length, 1);
  assert.is(groups[0]?.priority, 0);
  assert.is(groups[0]?.locality.sub_zone, "b");
});

const shapes = suite("resource shapes per data-plane flavour");

shapes("proxyless clients get an API listener per alias and FQDN, routed over RDS", () => {
  const t = translate(parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS })), "proxyless");
  assert.equal([...t.resources.listener.keys()].sort(), ["echo", "echo.demo.svc.clusterset.local:50051"]);
  const hcm = (t.resources.listener.get("echo")?.message as { api_listener: { api_listener: { rds: { route_config_name: string } } } }).api_listener.api_listener;
  assert.is(hcm.rds.route_config_name, "echo.demo.svc.clusterset.local:50051");
  assert.is(t.resources.secret.size, 0);
});

shapes("gateways get the 15443 export listener with one SNI chain per port, an import listener and SDS secrets", () => {
  const t = translate(parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS })), "gateway");
  const exp = t.resources.listener.get("fedgate-export-15443")?.message as { filter_chains: { filter_chain_match: { server_names: string[] } }[] };
  assert.equal(exp.filter_chains.map((c) => c.filter_chain_match.server_names), [["outbound_.50051_._.echo.demo.svc.clusterset.local"]]);
  assert.ok(t.resources.listener.has("fedgate-import-50051"));
  assert.equal([...t.resources.secret.keys()].sort(), ["fedgate-gateway-cert", "fedgate-trust-bundle"]);
  assert.ok(t.resources.cluster.has("inbound|50051||echo.demo.svc.cluster.local"));
});

shapes("an import listens on the gateway port the controller allocated, routing to the service port's cluster", () => {
  const input = { ...echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS }), importPorts: new Map([["demo/echo", [{ port: 50051, gatewayPort: 20007 }]]]) };
  const t = translate(parseFederationSnapshot(input), "gateway");
  assert.equal([...t.resources.listener.keys()].sort(), ["fedgate-export-15443", "fedgate-import-20007"]);
  const listener = t.resources.listener.get("fedgate-import-20007")?.message as { address: { socket_address: { port_value: number } } };
  assert.is(listener.address.socket_address.port_value, 20007);
  const route = t.resources.route.get("fedgate-import-20007")?.message as { virtual_hosts: { domains: string[]; routes: { route: { cluster: string } }[] }[] };
  assert.is(route.virtual_hosts[0]?.routes[0]?.route.cluster, CLA);
  assert.ok(route.virtual_hosts[0]?.domains.includes("echo.demo.svc.clusterset.local:50051"), "clients still name the service port");
  assert.equal(t.warnings, []);
});

shapes("an allocation colliding with another service's port is reported, and the first listener kept", () => {
  const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  const other = { ...echo, key: "demo/other", name: "other", exports: echo.exports.map((e) => ({ ...e, name: "other", ports: [{ name: "tcp", protocol: "TCP" as const, port: 20007 }] })) };
  const input = { ...base, services: [echo, other], importPorts: new Map([["demo/echo", [{ port: 50051, gatewayPort: 20007 }]]]) };
  const t = translate(parseFederationSnapshot(input), "gateway");
  const listener = t.resources.listener.get("fedgate-import-20007")?.message as { filter_chains: { filters: { name: string }[] }[] };
  assert.is(listener.filter_chains[0]?.filters[0]?.name, "envoy.filters.network.http_connection_manager", "echo's listener stays");
  assert.equal(
    t.warnings.map((w) => w.path),
    ["importPorts[demo/other]"],
  );
});

shapes("revocation lists ride the trust-bundle secret as validation_context.crl, and validate", () => {
  const CRL = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n";
  const without = translate(parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS })), "gateway");
  const bundleOf = (t: typeof without) => t.resources.secret.get("fedgate-trust-bundle")?.message as { validation_context: { crl?: { inline_string: string } } };
  assert.is(bundleOf(without).validation_context.crl, undefined, "no field without lists");
  const withCrl = translate(parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: { ...TLS, revocationsPem: CRL } })), "gateway");
  assert.equal(bundleOf(withCrl).validation_context.crl, { inline_string: CRL });
  assert.equal(validateAndEncode(new EncodedResourceCache({ registry }), withCrl.resources).problems, []);
  assert.throws(() => parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: { ...TLS, revocationsPem: "not a crl" } })));
});

shapes("routes carry retries on the next priority and timeouts", () => {
  const t = translate(parseFederationSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS })), "gateway");
  const route = t.resources.route.get("fedgate-import-50051")?.message as { virtual_hosts: { routes: { route: Record<string, unknown> }[] }[] };
  const action = route.virtual_hosts[0]?.routes[0]?.route as { timeout: unknown; retry_policy: { retry_priority: { name: string }; num_retries: { value: number } } };
  assert.equal(action.timeout, { seconds: 15, nanos: 0 });
  assert.is(action.retry_policy.retry_priority.name, "envoy.retry_priorities.previous_priorities");
  assert.is(action.retry_policy.num_retries.value, 2);
});

shapes("every resource of both flavours passes proto and protoc-gen-validate validation", () => {
  for (const flavour of ["gateway", "proxyless"] as const) {
    for (const input of [threePeers(), echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS, proxylessMtls: true })]) {
      const outcome = validateAndEncode(new EncodedResourceCache({ registry }), translate(parseFederationSnapshot(input), flavour).resources);
      assert.equal(outcome.problems, [], flavour);
    }
  }
});

shapes("translation is deterministic, so unchanged resources are never re-pushed", () => {
  const a = validateAndEncode(new EncodedResourceCache({ registry }), translate(parseFederationSnapshot(threePeers()), "gateway").resources).encoded;
  const b = validateAndEncode(new EncodedResourceCache({ registry }), translate(parseFederationSnapshot(threePeers()), "gateway").resources).encoded;
  assert.equal([...(a?.endpoint.values() ?? [])].map((r) => r.hash), [...(b?.endpoint.values() ?? [])].map((r) => r.hash));
});

priority.run();
shapes.run();
