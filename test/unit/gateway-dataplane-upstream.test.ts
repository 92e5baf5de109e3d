import { suite } from "uvu";
import * as assert from "uvu/assert";
import { silentLogger } from "../../common/index.ts";
import {
  gatewayMetrics,
  MetricsRegistry,
  parseCluster,
  parseFederationSnapshot,
  parseListener,
  parseLoadAssignment,
  parseRouteConfiguration,
  matchRoute,
  matchVirtualHost,
  ProtoRegistry,
  translate,
  TYPE_URL,
  UpstreamCluster,
  validateAndEncode, EncodedResourceCache, type ClusterSpec, type EndpointSpec, type LoadAssignmentSpec, type RouteConfigSpec, type ServicePolicyInput } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { gatewayLeaf, topologySnapshot } from "../support/gateway-harness.ts";

function cluster(outlier?: Partial<NonNullable<ClusterSpec["outlier"]>>): { c: UpstreamCluster; clock: { t: number } } {
  const clock = { t: 1_000_000 };
  const spec: ClusterSpec = {
    name: "outbound|9000||x",
    edsName: "outbound|9000||x",
    connectTimeoutMs: 1_000,
    outlier: outlier && { consecutiveFailures: 2, intervalMs: 10_000, baseEjectionMs: 1_000, maxEjectionMs: 2_500, maxEjectionPercent: 100, ...outlier },
    healthCheck: undefined,
    tlsMatches: [{ match: { "fedgate.io/tls": "mtls" }, sni: "sni", tls: { certSecret: "c", bundleSecret: "b" } }],
    http2: false,
  };
  return { c: new UpstreamCluster({ spec, metrics: gatewayMetrics(new MetricsRegistry()), logger: silentLogger, now: () => clock.t }), clock };
}

const ep = (port: number, healthy = true, tls = false): EndpointSpec => ({
  address: { host: "127.0.0.1", port },
  healthy,
  servingCluster: "",
  tlsMatchFields: tls ? { "fedgate.io/tls": "mtls" } : {},
});

const cla: LoadAssignmentSpec = {
  name: "outbound|9000||x",
  localities: [
    { priority: 0, weight: 3, endpoints: [ep(1), ep(2), ep(3)] },
    { priority: 0, weight: 1, endpoints: [ep(4)] },
    { priority: 1, weight: 1, endpoints: [ep(5, true, true)] },
    { priority: 2, weight: 1, endpoints: [ep(6, false)] },
  ],
};

const up = suite("upstream cluster: priorities, weights, outlier ejection");

up("the first choice stays in priority 0, weighted by locality; the next priority follows; EDS-unhealthy endpoints are never tried", () => {
  const { c } = cluster();
  c.setAssignment(cla);
  const firsts = new Map<number, number>();
  for (let i = 0; i < 400; i++) {
    const order = c.candidates().map((h) => h.spec.address.port);
    assert.ok(!order.includes(6));
    assert.is(order.at(-1), 5, "priority 1 comes after all of priority 0");
    firsts.set(order[0]!, (firsts.get(order[0]!) ?? 0) + 1);
  }
  // Locality weights 3:1 spread over their endpoints: each endpoint 1/4 of first choices.
  assert.equal([...firsts.entries()].sort(), [[1, 100], [2, 100], [3, 100], [4, 100]]);
});

up("TLS origination only for endpoints whose metadata matches the transport socket match", () => {
  const { c } = cluster();
  c.setAssignment(cla);
  const byPort = new Map(c.allHosts().map((h) => [h.spec.address.port, h]));
  assert.is(c.tlsFor(byPort.get(5)!)?.sni, "sni");
  assert.is(c.tlsFor(byPort.get(1)!), undefined);
});

up("consecutive connect failures eject with a backoff that grows per ejection and is capped", () => {
  const { c, clock } = cluster({});
  c.setAssignment({ name: "x", localities: [{ priority: 0, weight: 1, endpoints: [ep(1), ep(2)] }] });
  const host = c.allHosts().find((h) => h.spec.address.port === 1)!;
  const durations: number[] = [];
  for (let i = 0; i < 4; i++) {
    c.reportFailure(host);
    assert.ok(!host.ejected(clock.t), "one failure is not enough");
    c.reportFailure(host);
    assert.ok(host.ejected(clock.t));
    assert.is(c.candidates().at(-1), host, "an ejected endpoint is only a last resort");
    durations.push(host.ejectedUntil - clock.t);
    clock.t = host.ejectedUntil;
  }
  assert.equal(durations, [1_000, 2_000, 2_500, 2_500]);
  assert.is(c.series.ejections.value, 4);
});

up("a success resets the failure count; max_ejection_percent keeps some endpoints in", () => {
  const { c, clock } = cluster({ maxEjectionPercent: 50 });
  c.setAssignment({ name: "x", localities: [{ priority: 0, weight: 1, endpoints: [ep(1), ep(2)] }] });
  const [h1, h2] = c.allHosts();
  c.reportFailure(h1!);
  c.reportSuccess(h1!);
  c.reportFailure(h1!);
  assert.ok(!h1!.ejected(clock.t));
  c.reportFailure(h1!);
  assert.ok(h1!.ejected(clock.t));
  c.reportFailure(h2!);
  c.reportFailure(h2!);
  assert.ok(!h2!.ejected(clock.t), "50% of two endpoints: only one may be out");
});

const parse = suite("xDS resources: the supported subset");

const tcpListener = (filters: unknown[]) => ({
  name: "l",
  address: { socket_address: { address: "0.0.0.0", port_value: 9000 } },
  filter_chains: [{ filters }],
});
const tcpProxy = { name: "tcp", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy", cluster: "c" } };
const hcm = { name: "hcm", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" } };

const hcmRds = {
  name: "hcm",
  typed_config: {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    rds: { route_config_name: "r", config_source: { ads: {} } },
    http_filters: [{ name: "router", typed_config: { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }],
  },
};
const routeConfig = (match: Record<string, unknown>, route: Record<string, unknown>) => ({ name: "r", virtual_hosts: [{ name: "v", domains: ["*"], routes: [{ match, route: { cluster: "c", ...route } }] }] });

const cases: { name: string; run: () => { ok: boolean; problems?: { path: string; message: string }[] }; expect: RegExp | "ok" }[] = [
  { name: "tcp_proxy listener", run: () => parseListener(tcpListener([tcpProxy]), "l"), expect: "ok" },
  { name: "HTTP connection manager without RDS or router", run: () => parseListener(tcpListener([hcm]), "l"), expect: /RDS route_config_name.*only the router filter/ },
  { name: "HTTP connection manager with RDS and the router", run: () => parseListener(tcpListener([hcmRds]), "l"), expect: "ok" },
  { name: "HTTP connection manager next to tcp_proxy", run: () => parseListener(tcpListener([hcmRds, tcpProxy]), "l"), expect: /must be the only network filter/ },
  { name: "route configuration with prefix routes", run: () => parseRouteConfiguration(routeConfig({ prefix: "/" }, {}), "r"), expect: "ok" },
  { name: "regex route and weighted clusters", run: () => parseRouteConfiguration(routeConfig({ safe_regex: {} }, { cluster: undefined, weighted_clusters: {} }), "r"), expect: /only a prefix match.*name one cluster/ },
  {
    name: "unknown retry condition and retry priority",
    run: () => parseRouteConfiguration(routeConfig({ prefix: "/" }, { retry_policy: { retry_on: "5xx,envoy-ratelimited", retry_priority: { name: "other", typed_config: { "@type": "x" } } } }), "r"),
    expect: /unsupported retry condition envoy-ratelimited.*only previous_priorities/,
  },
  { name: "domain with a star in the middle", run: () => parseRouteConfiguration({ name: "r", virtual_hosts: [{ name: "v", domains: ["a.*.b"], routes: [] }] }, "r"), expect: /unsupported domain pattern/ },
  { name: "cluster with other protocol options", run: () => parseCluster({ name: "c", type: "EDS", typed_extension_protocol_options: { x: { "@type": "type.googleapis.com/other" } } }, "c"), expect: /HttpProtocolOptions/ },
  { name: "listener without address", run: () => parseListener({ name: "l", filter_chains: [{ filters: [tcpProxy] }] }, "l"), expect: /address/ },
  { name: "STATIC cluster", run: () => parseCluster({ name: "c", type: "STATIC" }, "c"), expect: /only EDS/ },
  { name: "LEAST_REQUEST cluster", run: () => parseCluster({ name: "c", type: "EDS", lb_policy: "LEAST_REQUEST" }, "c"), expect: /ROUND_ROBIN/ },
  {
    name: "HTTP health check without a path",
    run: () => parseCluster({ name: "c", type: "EDS", health_checks: [{ timeout: {}, interval: {}, unhealthy_threshold: { value: 1 }, healthy_threshold: { value: 1 }, http_health_check: {} }] }, "c"),
    expect: /http_health_check\.path: must be an absolute path/,
  },
  {
    name: "HTTP health check with a body to send, a backwards status range, and a TCP check too",
    run: () =>
      parseCluster(
        {
          name: "c",
          type: "EDS",
          health_checks: [{ timeout: {}, interval: {}, unhealthy_threshold: { value: 1 }, healthy_threshold: { value: 1 }, tcp_health_check: {}, http_health_check: { path: "/h", send: { text: "00" }, expected_statuses: [{ start: "500", end: "200" }] } }],
        },
        "c",
      ),
    expect: /one of tcp_health_check and http_health_check.*only path, host and expected_statuses are supported, got send.*expected_statuses\[0\]: must be a range/,
  },
  {
    name: "HTTP health check with path, host and statuses",
    run: () => parseCluster({ name: "c", type: "EDS", health_checks: [{ timeout: {}, interval: {}, unhealthy_threshold: { value: 1 }, healthy_threshold: { value: 1 }, http_health_check: { path: "/h", host: "x", expected_statuses: [{ start: "200", end: "400" }] } }] }, "c"),
    expect: "ok",
  },
  { name: "EDS cluster with outlier detection", run: () => parseCluster({ name: "c", type: "EDS", outlier_detection: { consecutive_5xx: { value: 3 } } }, "c"), expect: "ok" },
  { name: "CLA with a bad port", run: () => parseLoadAssignment({ cluster_name: "c", endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: "a", port_value: 70_000 } } } }] }] }, "c"), expect: /65535/ },
];

for (const c of cases) {
  parse(`${c.name}: ${c.expect === "ok" ? "accepted" : "rejected with a reason"}`, () => {
    const r = c.run();
    if (c.expect === "ok") assert.ok(r.ok, JSON.stringify(r.problems));
    else {
      assert.not.ok(r.ok);
      assert.match((r.problems ?? []).map((p) => `${p.path}: ${p.message}`).join("; "), c.expect);
    }
  });
}

parse("round trip: the control plane's gateway resources (export consumers included) encode, decode and parse cleanly", async () => {
  const pki = await createClusterSetPki(["a", "b"]);
  const registry = ProtoRegistry.load();
  const snapshot = parseFederationSnapshot(
    topologySnapshot({ self: "b", pki, exporters: ["a", "b"], exportPorts: new Map([["a", 7001]]), backends: [], leaf: await gatewayLeaf(pki, "b"), consumers: ["a"], policy: { healthCheck: {} } }),
  );
  const outcome = validateAndEncode(new EncodedResourceCache({ registry }), translate(snapshot, "gateway").resources);
  const encoded = outcome.encoded;
  assert.ok(encoded, JSON.stringify(outcome.problems));
  const decode = (kind: "listener" | "cluster" | "endpoint" | "route") => [...encoded[kind].values()].map((r) => registry.decodeAny(TYPE_URL[kind], r.bytes));
  const listeners = decode("listener").map((l) => parseListener(l, "l"));
  const exportListener = listeners.find((l) => l.ok && l.value.kind === "sni-mtls");
  assert.ok(exportListener?.ok && exportListener.value.kind === "sni-mtls");
  assert.equal(exportListener.value.chains.map((c) => c.consumers), [["a"]]);
  assert.ok(listeners.every((l) => l.ok));
  assert.ok(decode("cluster").every((c) => parseCluster(c, "c").ok));
  assert.ok(decode("endpoint").every((e) => parseLoadAssignment(e, "e").ok));
});

parse("round trip: a policy's HTTP health check reaches the gateway's cluster spec (Host defaults to the clusterset name, 200 to the expected statuses)", async () => {
  const pki = await createClusterSetPki(["a"]);
  const registry = ProtoRegistry.load();
  const specs = async (http: NonNullable<NonNullable<ServicePolicyInput["healthCheck"]>["http"]>) => {
    const snapshot = parseFederationSnapshot(topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [{ port: 7000 }], leaf: await gatewayLeaf(pki, "a"), policy: { healthCheck: { intervalMs: 700, http } } }));
    const outcome = validateAndEncode(new EncodedResourceCache({ registry }), translate(snapshot, "gateway").resources);
    assert.ok(outcome.encoded, JSON.stringify(outcome.problems));
    return [...outcome.encoded.cluster.values()].map((r) => {
      const parsed = parseCluster(registry.decodeAny(TYPE_URL.cluster, r.bytes), "c");
      assert.ok(parsed.ok, JSON.stringify(parsed.ok || parsed.problems));
      return parsed.value.healthCheck;
    });
  };
  const [custom] = await specs({ path: "/healthz", host: "probe.local", expectedStatuses: [{ start: 200, end: 300 }, { start: 418, end: 419 }] });
  assert.equal(custom, { intervalMs: 700, timeoutMs: 1_000, unhealthyThreshold: 3, healthyThreshold: 1, http: { path: "/healthz", host: "probe.local", expectedStatuses: [{ start: 200, end: 300 }, { start: 418, end: 419 }] } });
  const [defaults] = await specs({ path: "/" });
  assert.equal(defaults?.http, { path: "/", host: "echo.demo.svc.clusterset.local", expectedStatuses: [{ start: 200, end: 201 }] });
});

parse("round trip: an L7 import (HTTP and gRPC on one port) becomes an HTTP listener and a route configuration with the policy's timeout and retries", async () => {
  const pki = await createClusterSetPki(["a"]);
  const registry = ProtoRegistry.load();
  const input = topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [{ port: 7000 }], leaf: await gatewayLeaf(pki, "a"), policy: { timeoutMs: 2_500, retries: { attempts: 3, perTryTimeoutMs: 800 } } });
  const web = { ...input.services[0]!.exports[0]!, ports: [{ name: "http", protocol: "TCP" as const, port: 9000 }] };
  const greeter = { ...web, name: "greeter", ports: [{ name: "grpc", protocol: "TCP" as const, port: 9000, appProtocol: "grpc" }] };
  const snapshot = parseFederationSnapshot({
    ...input,
    services: [
      { key: "demo/echo", namespace: "demo", name: "echo", exports: [web] },
      { key: "demo/greeter", namespace: "demo", name: "greeter", exports: [greeter] },
    ],
    policies: new Map([["demo/echo", input.policies!.get("demo/echo")!], ["demo/greeter", input.policies!.get("demo/echo")!]]),
  });
  const outcome = validateAndEncode(new EncodedResourceCache({ registry }), translate(snapshot, "gateway").resources);
  assert.ok(outcome.encoded, JSON.stringify(outcome.problems));
  const encoded = outcome.encoded;
  const decode = (kind: "listener" | "cluster" | "route") => [...encoded[kind].values()].map((r) => registry.decodeAny(TYPE_URL[kind], r.bytes));
  const http = decode("listener").map((l) => parseListener(l, "l")).find((l) => l.ok && l.value.kind === "http");
  assert.ok(http?.ok && http.value.kind === "http");
  const routes = decode("route").map((r) => parseRouteConfiguration(r, "r"));
  assert.is(routes.length, 1);
  const rc = routes[0]!;
  assert.ok(rc.ok, JSON.stringify(!rc.ok && rc.problems));
  assert.is(rc.value.name, http.value.routeConfig);
  const echo = matchVirtualHost(rc.value, "echo.demo.svc.clusterset.local:9000");
  const grpcHost = matchVirtualHost(rc.value, "greeter.demo.svc.clusterset.local");
  assert.ok(echo && grpcHost && echo !== grpcHost);
  const route = matchRoute(echo, "/any/path")!;
  assert.is(route.timeoutMs, 2_500);
  assert.equal({ ...route.retry!, retryOn: [...route.retry!.retryOn].sort() }, {
    retryOn: ["5xx", "connect-failure", "gateway-error", "refused-stream", "reset"],
    numRetries: 3,
    perTryTimeoutMs: 800,
    backOffBaseMs: 25,
    backOffMaxMs: 250,
    skipPreviousPriorities: true,
    skipPreviousHosts: true,
  });
  assert.ok(matchRoute(grpcHost, "/demo.Greeter/Greet")!.retry!.retryOn.has("unavailable"));
  const clusters = decode("cluster").map((c) => parseCluster(c, "c"));
  assert.equal(clusters.flatMap((c) => (c.ok && c.value.name.startsWith("outbound|") ? [[c.value.name.split("|")[3], c.value.http2]] : [])).sort(), [
    ["echo.demo.svc.clusterset.local", false],
    ["greeter.demo.svc.clusterset.local", true],
  ]);
});

const router = suite("HTTP routing: virtual hosts by domain, routes by prefix");

const vhosts: RouteConfigSpec = {
  name: "r",
  virtualHosts: [
    { name: "exact", domains: ["web.demo", "web.demo:9000"], routes: [{ prefix: "/api", cluster: "api", timeoutMs: 0, retry: undefined }, { prefix: "/", cluster: "web", timeoutMs: 0, retry: undefined }] },
    { name: "suffix", domains: ["*.demo"], routes: [{ prefix: "/", cluster: "suffix", timeoutMs: 0, retry: undefined }] },
    { name: "prefix", domains: ["web.*"], routes: [{ prefix: "/", cluster: "prefix", timeoutMs: 0, retry: undefined }] },
    { name: "any", domains: ["*"], routes: [{ prefix: "/only", cluster: "any", timeoutMs: 0, retry: undefined }] },
  ],
};

for (const [authority, path, cluster] of [
  ["web.demo", "/api/x", "api"],
  ["WEB.demo:9000", "/x", "web"],
  ["x.demo:8080", "/x", "suffix"],
  ["other.demo", "/x", "suffix"],
  ["web.other", "/x", "prefix"],
  ["elsewhere", "/only/x", "any"],
  ["elsewhere", "/x", undefined],
] as const) {
  router(`${authority}${path} goes to ${cluster ?? "no route"}`, () => {
    const vh = matchVirtualHost(vhosts, authority);
    assert.is(vh && matchRoute(vh, path)?.cluster, cluster);
  });
}

up.run();
parse.run();
router.run();
