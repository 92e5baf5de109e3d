import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  EncodedResourceCache,
  parseFederationSnapshot,
  ProtoRegistry,
  translate,
  Translator,
  TYPE_URL,
  validateAndEncode,
  XdsCore,
  type DeltaDiscoveryResponse,
  type FederationSnapshotInput,
  type Translation,
} from "../../gateway/internal.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const OTHER_PEM = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
const CRL = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const FLAVOURS = ["gateway", "proxyless"] as const;

type Input = FederationSnapshotInput;
type Service = Input["services"][number];

function renamed(service: Service, name: string, ports?: Service["exports"][number]["ports"]): Service {
  return { ...service, key: `demo/${name}`, name, exports: service.exports.map((e) => ({ ...e, name, ...(ports ? { ports } : {}) })) };
}

/** echo (gRPC, exported here and by b), http-0..2 (HTTP), tcp (plain TCP): every shape an import or export takes. */
function base(): Input {
  const input = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const fromB = input.services[0]!;
  // A third cluster, c, in this cluster's region: failover order between b and c then matters.
  const echo = { ...fromB, exports: [...fromB.exports, { ...fromB.exports[1]!, cluster: "c", gateway: { host: "127.0.0.1", port: 7002 }, readyEndpoints: [{ zone: "z3", ready: 2 }] }] };
  const c = { name: "c", registration: { region: "r1", zones: ["z3"], network: "", gatewayAddresses: [{ host: "127.0.0.1", port: 7002 }], identity: "spiffe://fedgate.test/cluster/c/gateway" }, leaseLive: true, stale: false };
  const http = (i: number) => renamed(echo, `http-${i}`, [{ name: "http", protocol: "TCP", port: 8080 }]);
  return {
    ...input,
    services: [echo, http(0), http(1), http(2), renamed(echo, "tcp", [{ name: "tcp", protocol: "TCP", port: 6379 }])],
    clusters: [...input.clusters, c],
    localEndpoints: new Map([
      ["demo/echo", [{ address: "10.0.0.1", port: 9000, zone: "z1", ready: true }]],
      ["demo/http-1", [{ address: "10.0.0.2", port: 8080, zone: "z1", ready: true }]],
    ]),
    policies: new Map([
      ["demo/echo", { aliases: ["echo"] }],
      ["demo/http-1", { timeoutMs: 3_000 }],
    ]),
  };
}

/** Replaces service `key` with what `change` makes of it. */
function withService(input: Input, key: string, change: (s: Service) => Service): Input {
  return { ...input, services: input.services.map((s) => (s.key === key ? change(s) : s)) };
}

function plain(t: Translation): unknown {
  return { resources: Object.fromEntries(Object.entries(t.resources).map(([kind, map]) => [kind, [...map].map(([name, r]) => [name, r.message, r.refs])])), warnings: t.warnings };
}

/**
 * One change per input translation reads; each must reach the output (a stale
 * memo is the bug this guards against). `only`: the one flavour it matters to.
 */
const changes: { name: string; change: (input: Input) => Input; only?: (typeof FLAVOURS)[number] }[] = [
  { name: "a service's ports", change: (i) => withService(i, "demo/http-1", (s) => renamed(s, "http-1", [{ name: "http", protocol: "TCP", port: 8081 }])) },
  { name: "a port's app protocol (L4 becomes L7)", change: (i) => withService(i, "demo/tcp", (s) => renamed(s, "tcp", [{ name: "tcp", protocol: "TCP", port: 6379, appProtocol: "http" }])), only: "gateway" },
  { name: "a local endpoint withdrawn", change: (i) => ({ ...i, localEndpoints: new Map([["demo/echo", []], ["demo/http-1", [{ address: "10.0.0.2", port: 8080, zone: "z1", ready: true }]]]) }) },
  { name: "a local endpoint turning unready", change: (i) => ({ ...i, localEndpoints: new Map([["demo/echo", [{ address: "10.0.0.1", port: 9000, zone: "z1", ready: false }]], ["demo/http-1", [{ address: "10.0.0.2", port: 8080, zone: "z1", ready: true }]]]) }) },
  { name: "a peer's ready endpoints", change: (i) => withService(i, "demo/echo", (s) => ({ ...s, exports: s.exports.map((e) => (e.cluster === "b" ? { ...e, readyEndpoints: [{ zone: "z2", ready: 0 }] } : e)) })) },
  { name: "a peer's gateway address", change: (i) => withService(i, "demo/echo", (s) => ({ ...s, exports: s.exports.map((e) => (e.cluster === "b" ? { ...e, gateway: { host: "127.0.0.9", port: 7009 } } : e)) })) },
  { name: "an export's consumers", change: (i) => withService(i, "demo/echo", (s) => ({ ...s, exports: s.exports.map((e) => (e.cluster === "a" ? { ...e, consumers: ["b"] } : e)) })), only: "gateway" },
  { name: "a service's policy (retries, timeout)", change: (i) => ({ ...i, policies: new Map([["demo/echo", { aliases: ["echo"], timeoutMs: 4_000, retries: { attempts: 0 } }], ["demo/http-1", { timeoutMs: 3_000 }]]) }) },
  { name: "a policy's failover order", change: (i) => ({ ...i, policies: new Map([["demo/echo", { aliases: ["echo"], failover: { clusterOrder: ["b"], labels: [] } }], ["demo/http-1", { timeoutMs: 3_000 }]]) }) },
  { name: "a policy's aliases", change: (i) => ({ ...i, policies: new Map([["demo/echo", { aliases: ["echo", "echo-2"] }], ["demo/http-1", { timeoutMs: 3_000 }]]) }), only: "proxyless" },
  { name: "a health check added to a policy", change: (i) => ({ ...i, policies: new Map([["demo/echo", { aliases: ["echo"], healthCheck: {} }], ["demo/http-1", { timeoutMs: 3_000 }]]) }), only: "gateway" },
  { name: "an import port allocated", change: (i) => ({ ...i, importPorts: new Map([["demo/tcp", [{ port: 6379, gatewayPort: 20001 }]]]) }), only: "gateway" },
  { name: "the trust domain", change: (i) => ({ ...i, tls: { ...TLS, trustDomain: "other.test" }, proxyless: { mtls: true } }) },
  { name: "the trust bundle", change: (i) => ({ ...i, tls: { ...TLS, trustBundlePems: [PEM, OTHER_PEM] } }), only: "gateway" },
  { name: "the gateway certificate", change: (i) => ({ ...i, tls: { ...TLS, gatewayCertChainPem: OTHER_PEM } }), only: "gateway" },
  { name: "the revocation lists", change: (i) => ({ ...i, tls: { ...TLS, revocationsPem: CRL } }), only: "gateway" },
  { name: "proxyless mTLS switched on", change: (i) => ({ ...i, proxyless: { mtls: true } }), only: "proxyless" },
  { name: "this cluster's name", change: (i) => ({ ...i, self: { ...i.self, cluster: "b" } }) },
  { name: "this cluster's locality", change: (i) => ({ ...i, self: { ...i.self, region: "r2" } }) },
  { name: "a peer cluster going stale", change: (i) => ({ ...i, clusters: i.clusters.map((c) => (c.name === "b" ? { ...c, stale: true } : c)) }) },
  { name: "a peer cluster's registered region", change: (i) => ({ ...i, clusters: i.clusters.map((c) => (c.name === "b" && c.registration ? { ...c, registration: { ...c.registration, region: "r1" } } : c)) }) },
  { name: "a later, stale copy of a peer's view (the last one counts)", change: (i) => ({ ...i, clusters: [...i.clusters, { ...i.clusters.find((c) => c.name === "b")!, stale: true }] }) },
  { name: "a service added", change: (i) => ({ ...i, services: [...i.services, renamed(i.services[0]!, "added")] }) },
  { name: "a service removed", change: (i) => ({ ...i, services: i.services.filter((s) => s.key !== "demo/http-0") }) },
  { name: "services reordered", change: (i) => ({ ...i, services: [...i.services].reverse() }) },
];

const memo = suite("incremental translation: what changed is translated again, nothing else");

for (const c of changes) {
  memo(`picks up ${c.name}, in both flavours, exactly as a translation from scratch`, () => {
    for (const flavour of FLAVOURS) {
      const translator = new Translator();
      const before = translator.translate(parseFederationSnapshot(base()), flavour);
      const after = translator.translate(parseFederationSnapshot(c.change(base())), flavour);
      const fresh = translate(parseFederationSnapshot(c.change(base())), flavour);
      assert.equal(plain(after), plain(fresh), flavour);
      if (!c.only || c.only === flavour) assert.not.equal(plain(after), plain(before), `${flavour}: the change must matter to this flavour, else the case proves nothing`);
      const back = translator.translate(parseFederationSnapshot(base()), flavour);
      assert.equal(plain(back), plain(before), `${flavour}: and back`);
    }
  });
}

memo("an unchanged service keeps its translated objects; of a changed one, only the pieces that changed are new", () => {
  const translator = new Translator();
  const first = translator.translate(parseFederationSnapshot(base()), "gateway");
  const timeout = { ...base(), policies: new Map([["demo/echo", { aliases: ["echo"] }], ["demo/http-1", { timeoutMs: 4_000 }]]) };
  const next = translator.translate(parseFederationSnapshot(timeout), "gateway");
  const same = (kind: "cluster" | "endpoint" | "listener" | "route", name: string) => next.resources[kind].get(name)?.message === first.resources[kind].get(name)?.message;
  assert.ok(same("cluster", "outbound|50051||echo.demo.svc.clusterset.local"), "echo is reused, though the snapshot is a new object");
  assert.ok(same("endpoint", "outbound|50051||echo.demo.svc.clusterset.local"));
  assert.ok(same("cluster", "outbound|8080||http-1.demo.svc.clusterset.local"), "http-1's cluster does not depend on the request timeout");
  assert.ok(same("listener", "fedgate-export-15443"), "no export chain changed: the export listener is reused whole");
  assert.not.ok(same("route", "fedgate-import-8080"), "http-1's virtual host changed");
  const ports = translator.translate(parseFederationSnapshot(changes[0]!.change(base())), "gateway");
  assert.ok(ports.resources.cluster.has("outbound|8081||http-1.demo.svc.clusterset.local"));
  assert.not.ok(ports.resources.cluster.has("outbound|8080||http-1.demo.svc.clusterset.local"));
  assert.not.ok(ports.resources.listener.get("fedgate-export-15443")?.message === first.resources.listener.get("fedgate-export-15443")?.message, "http-1's export chain changed");
});

memo("an unchanged service is not validated or encoded again; a changed one is", () => {
  const counted = ProtoRegistry.load();
  let encodes = 0;
  const encode = counted.encode.bind(counted);
  const encodeItem = counted.encodeRepeatedItem.bind(counted);
  counted.encode = (...args) => {
    encodes += 1;
    return encode(...args);
  };
  counted.encodeRepeatedItem = (...args) => {
    encodes += 1;
    return encodeItem(...args);
  };
  const cache = new EncodedResourceCache({ registry: counted });
  const translator = new Translator();
  const apply = (input: Input) => {
    const outcome = validateAndEncode(cache, translator.translate(parseFederationSnapshot(input), "gateway").resources);
    cache.endGeneration();
    assert.equal(outcome.problems, []);
    return outcome.encoded;
  };
  const first = apply(base());
  assert.ok(encodes > 10);
  encodes = 0;
  const same = apply(base());
  assert.is(encodes, 0, "an equal snapshot: nothing validated again");
  assert.ok(same?.cluster.get("outbound|50051||echo.demo.svc.clusterset.local") === first?.cluster.get("outbound|50051||echo.demo.svc.clusterset.local"));
  const endpointWithdrawn = changes.find((c) => c.name === "a local endpoint withdrawn")!;
  const changed = apply(endpointWithdrawn.change(base()));
  assert.is(encodes, 2, "only the two ClusterLoadAssignments of echo that changed");
  assert.ok(changed?.endpoint.get("outbound|50051||echo.demo.svc.clusterset.local")?.hash !== first?.endpoint.get("outbound|50051||echo.demo.svc.clusterset.local")?.hash);
  assert.ok(changed?.cluster.get("outbound|8080||http-0.demo.svc.clusterset.local") === first?.cluster.get("outbound|8080||http-0.demo.svc.clusterset.local"));
});

memo("a resource that failed its own checks is not remembered by identity", () => {
  const cache = new EncodedResourceCache({ registry: ProtoRegistry.load() });
  const message = { cluster_name: "c", endpoints: [{ priority: 1, lb_endpoints: [] }] };
  const set = () => {
    const t = translate(parseFederationSnapshot(base()), "gateway").resources;
    t.endpoint.set("c", { kind: "endpoint", name: "c", message, refs: [] });
    return t;
  };
  for (let i = 0; i < 2; i++) {
    const outcome = validateAndEncode(cache, set());
    assert.is(outcome.encoded, undefined);
    assert.ok(outcome.problems.some((p) => p.message.includes("priority 1 is used but 0 is not")), JSON.stringify(outcome.problems));
  }
});

memo.run();

const sessions = suite("sessions look only at the names a snapshot changed");

sessions("delta nodes get exactly the changed resources and removals, through many changes in a row", () => {
  const core = new XdsCore({ registry: ProtoRegistry.load() });
  core.setSnapshot(base());
  core.flush();
  const node = (id: string) => ({ id, cluster: "a", userAgentName: "envoy", dataplane: "gateway" });
  const held = new Map<string, Map<string, string>>();
  const open = (id: string, typeUrl: string, subscribe: string[]) => {
    const sent: DeltaDiscoveryResponse[] = [];
    const state = new Map<string, string>();
    held.set(`${id} ${typeUrl}`, state);
    const { session } = core.openDeltaSession((r) => {
      sent.push(r);
      for (const res of r.resources) state.set(res.name, res.hash);
      for (const name of r.removedResources) state.delete(name);
      session.handleRequest({ node: undefined, typeUrl, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: r.nonce, errorDetail: undefined });
    });
    session.handleRequest({ node: node(id), typeUrl, subscribe, unsubscribe: [], initialResourceVersions: {}, responseNonce: "", errorDetail: undefined });
    return sent;
  };
  const wildcard = open("w", TYPE_URL.cluster, ["*"]);
  const named = open("n", TYPE_URL.endpoint, ["outbound|50051||echo.demo.svc.clusterset.local", "outbound|50051||added.demo.svc.clusterset.local"]);
  const steps = [...changes.map((c) => c.change(base())), base(), changes.find((c) => c.name === "a service added")!.change(base()), base()];
  for (const input of steps) {
    const pushesBefore = wildcard.length + named.length;
    core.setSnapshot(input);
    core.flush();
    const clusters = core.resources("gateway")?.cluster;
    const endpoints = core.resources("gateway")?.endpoint;
    assert.equal(held.get(`w ${TYPE_URL.cluster}`), new Map([...(clusters ?? [])].map(([n, r]) => [n, r.hash])), "the wildcard node holds every cluster");
    const wanted = ["outbound|50051||echo.demo.svc.clusterset.local", "outbound|50051||added.demo.svc.clusterset.local"].filter((n) => endpoints?.has(n));
    assert.equal(held.get(`n ${TYPE_URL.endpoint}`), new Map(wanted.map((n) => [n, endpoints?.get(n)?.hash ?? ""])), "the named node holds what exists of its names");
    assert.ok(wildcard.length + named.length - pushesBefore <= 2, "at most one push per stream per change");
  }
  const added = "outbound|50051||added.demo.svc.clusterset.local";
  const upserted = named.findIndex((r) => r.resources.some((res) => res.name === added));
  assert.ok(upserted > 0, "the subscribed name was served once it existed");
  assert.ok(named.slice(upserted + 1).some((r) => r.removedResources.includes(added)), "and reported removed when it went away");
});

sessions.run();
