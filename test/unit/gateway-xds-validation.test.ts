import { suite } from "uvu";
import * as assert from "uvu/assert";
import { EncodedResourceCache, emptyResourceSet, ProtoRegistry, validateAndEncode, type ProtoMessage, type ResourceKind } from "../../gateway/internal.ts";

const registry = ProtoRegistry.load();
const ADS = { ads: {}, resource_api_version: "V3" };

function set(entries: { kind: ResourceKind; name: string; message: ProtoMessage; refs?: { kind: ResourceKind; name: string }[] }[]) {
  const s = emptyResourceSet();
  for (const e of entries) s[e.kind].set(e.name, { kind: e.kind, name: e.name, message: e.message, refs: e.refs ?? [] });
  return s;
}

const cla = (endpoints: unknown[]) => ({ kind: "endpoint" as const, name: "c", message: { cluster_name: "c", endpoints } });
const group = (priority: number, address: string, weight = 1) => ({
  locality: { region: "r", zone: String(priority), sub_zone: address },
  priority,
  load_balancing_weight: { value: weight },
  lb_endpoints: [{ endpoint: { address: { socket_address: { address, port_value: 80 } } } }],
});

const cases: { name: string; input: ReturnType<typeof set>; expect: string[] }[] = [
  { name: "accepts a well-formed ClusterLoadAssignment", input: set([cla([group(0, "10.0.0.1"), group(1, "10.0.0.2")])]), expect: [] },
  { name: "rejects an empty cluster name (PGV min_len)", input: set([{ kind: "cluster", name: "", message: { name: "", type: "EDS", eds_cluster_config: { eds_config: ADS } } }]), expect: ["cluster[].name: must not be empty"] },
  { name: "rejects an out-of-range priority and a zero weight (PGV lte/gte)", input: set([cla([group(200, "10.0.0.1", 0)])]), expect: ["0 must be at least 1", "200 must be at most 128", "priority 200 is used but 0 is not"] },
  { name: "rejects a gap in priorities (gRPC would NACK)", input: set([cla([group(0, "10.0.0.1"), group(2, "10.0.0.2")])]), expect: ["priority 2 is used but 1 is not"] },
  { name: "rejects the same address twice in one assignment", input: set([cla([group(0, "10.0.0.1"), group(1, "10.0.0.1")])]), expect: ["address 10.0.0.1:80 appears twice"] },
  { name: "rejects an unknown field and a wrongly typed one", input: set([{ kind: "cluster", name: "c", message: { name: "c", tpye: "EDS", connect_timeout: "5s" } }]), expect: ["unknown field of Cluster", "expected a Duration message"] },
  { name: "rejects a non-positive connect timeout (PGV duration gt)", input: set([{ kind: "cluster", name: "c", message: { name: "c", connect_timeout: { seconds: 0, nanos: 0 } } }]), expect: ["duration must be greater than 0 ms"] },
  { name: "rejects an unset required oneof (tcp_proxy without a cluster)", input: set([{ kind: "listener", name: "l", message: { name: "l", filter_chains: [{ filters: [{ name: "t", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", stat_prefix: "x" } }] }] } }]), expect: ["one of cluster, weighted_clusters is required"] },
  { name: "rejects an unknown enum value", input: set([{ kind: "cluster", name: "c", message: { name: "c", lb_policy: "FASTEST" } }]), expect: ['"FASTEST" is not a value of enum LbPolicy'] },
  { name: "rejects a dangling reference between resources", input: set([{ kind: "cluster", name: "c", message: { name: "c" }, refs: [{ kind: "endpoint", name: "c" }] }]), expect: ["refers to missing endpoint c"] },
  { name: "rejects a resource keyed under another name", input: set([{ kind: "route", name: "r1", message: { name: "r2" } }]), expect: ["keyed r1 but names itself r2"] },
  { name: "collects every problem instead of stopping at the first", input: set([cla([group(0, "10.0.0.1", 0), group(0, "10.0.0.1", 0)])]), expect: ["0 must be at least 1", "0 must be at least 1", "appears twice", "appears twice"] },
];

const validation = suite("resource validation before anything is sent");

for (const c of cases) {
  validation(c.name, () => {
    const outcome = validateAndEncode(new EncodedResourceCache({ registry }), c.input);
    const messages = outcome.problems.map((p) => `${p.path}: ${p.message}`);
    if (c.expect.length === 0) {
      assert.equal(messages, []);
      assert.ok(outcome.encoded);
      return;
    }
    assert.is(outcome.encoded, undefined, "nothing is encoded when a problem exists");
    for (const e of c.expect) assert.ok(messages.some((m) => m.includes(e)), `expected "${e}" in ${JSON.stringify(messages)}`);
    assert.ok(messages.length >= c.expect.length);
  });
}

validation("round-trips: encode then decode gives back the message", () => {
  const message = { cluster_name: "c", endpoints: [group(0, "10.0.0.1", 3)] };
  const { bytes, problems } = registry.encode("envoy.config.endpoint.v3.ClusterLoadAssignment", message);
  assert.equal(problems, []);
  const decoded = registry.decode("envoy.config.endpoint.v3.ClusterLoadAssignment", bytes ?? new Uint8Array());
  assert.equal(decoded, message);
});

validation.run();

const cache = suite("encoded resource cache");

cache("an unchanged resource is encoded once and shared; a changed one is encoded again", () => {
  const c = new EncodedResourceCache({ registry });
  const first = validateAndEncode(c, set([cla([group(0, "10.0.0.1")])])).encoded?.endpoint.get("c");
  const again = validateAndEncode(c, set([cla([group(0, "10.0.0.1")])])).encoded?.endpoint.get("c");
  const changed = validateAndEncode(c, set([cla([group(0, "10.0.0.2")])])).encoded?.endpoint.get("c");
  assert.ok(first);
  assert.is(again, first, "same content: the same encoded object");
  assert.ok(changed && changed !== first);
  assert.is.not(changed.hash, first.hash);
  assert.equal(registry.decode("envoy.config.endpoint.v3.ClusterLoadAssignment", changed.bytes), { cluster_name: "c", endpoints: [group(0, "10.0.0.2")] });
});

cache("an invalid resource is never cached: every snapshot reports it again", () => {
  const c = new EncodedResourceCache({ registry });
  for (let i = 0; i < 2; i++) {
    const outcome = validateAndEncode(c, set([cla([group(0, "10.0.0.1", 0)])]));
    assert.is(outcome.encoded, undefined);
    assert.ok(outcome.problems.some((p) => p.message.includes("0 must be at least 1")), JSON.stringify(outcome.problems));
  }
  assert.is(c.size, 0);
});

cache("NaN is not mistaken for an unset field", () => {
  const c = new EncodedResourceCache({ registry });
  const unset = { kind: "endpoint" as const, name: "c", message: { cluster_name: "c", endpoints: [{ ...group(0, "10.0.0.1"), priority: null }] } };
  const nan = { ...unset, message: { cluster_name: "c", endpoints: [{ ...group(0, "10.0.0.1"), priority: Number.NaN }] } };
  assert.ok(validateAndEncode(c, set([unset])).encoded);
  assert.is(validateAndEncode(c, set([nan])).encoded, undefined);
});

cache("entries unused for a whole generation are dropped", () => {
  const c = new EncodedResourceCache({ registry });
  validateAndEncode(c, set([cla([group(0, "10.0.0.1")])]));
  c.endGeneration();
  validateAndEncode(c, set([cla([group(0, "10.0.0.2")])]));
  assert.is(c.size, 2, "the previous generation is still at hand");
  c.endGeneration();
  validateAndEncode(c, set([cla([group(0, "10.0.0.2")])]));
  c.endGeneration();
  assert.is(c.size, 1);
});

const host = (n: number, domains = [`s${n}.example`]) => ({ name: `h${n}`, domains, routes: [{ match: { prefix: "/" }, route: { cluster: `c${n}` } }] });
const routeConfig = (hosts: unknown[]) => ({ kind: "route" as const, name: "r", message: { name: "r", virtual_hosts: hosts } });

cache("a RouteConfiguration is validated host by host: a new host costs one validation, and the bytes decode to the whole", () => {
  const counted = ProtoRegistry.load();
  let itemValidations = 0;
  const encodeItem = counted.encodeRepeatedItem.bind(counted);
  counted.encodeRepeatedItem = (...args) => {
    itemValidations += 1;
    return encodeItem(...args);
  };
  const c = new EncodedResourceCache({ registry: counted });
  const hosts = Array.from({ length: 50 }, (_, i) => host(i));
  const first = validateAndEncode(c, set([routeConfig(hosts)])).encoded?.route.get("r");
  assert.is(itemValidations, 50);
  c.endGeneration();
  const grown = validateAndEncode(c, set([routeConfig([...hosts, host(50)])])).encoded?.route.get("r");
  assert.is(itemValidations, 51, "only the new virtual host was validated");
  assert.ok(first && grown && grown.hash !== first.hash);
  assert.equal(registry.decode("envoy.config.route.v3.RouteConfiguration", grown.bytes), registry.decode("envoy.config.route.v3.RouteConfiguration", registry.encode("envoy.config.route.v3.RouteConfiguration", routeConfig([...hosts, host(50)]).message).bytes ?? new Uint8Array()));
  const back = validateAndEncode(c, set([routeConfig(hosts)])).encoded?.route.get("r");
  assert.is(back, first, "the previous content again: the same encoded object");
  assert.is(itemValidations, 51);
});

cache("an invalid virtual host is reported at its index, and the route is not encoded", () => {
  const c = new EncodedResourceCache({ registry });
  for (let i = 0; i < 2; i++) {
    const outcome = validateAndEncode(c, set([routeConfig([host(0), host(1, [])])]));
    assert.is(outcome.encoded, undefined);
    assert.ok(outcome.problems.some((p) => p.path.startsWith("route[r].virtual_hosts[1].domains")), JSON.stringify(outcome.problems));
  }
});

cache.run();
