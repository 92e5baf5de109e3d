import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry, TYPE_URL, XdsCore, XdsProtocolError, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from "../../gateway/internal.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const registry = ProtoRegistry.load();
const node = { id: "n1", cluster: "a", userAgentName: "envoy", dataplane: "gateway" };

function setup() {
  const core = new XdsCore({ registry });
  core.setSnapshot(echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS }));
  core.flush();
  const sent: DeltaDiscoveryResponse[] = [];
  const { session } = core.openDeltaSession((r) => sent.push(r));
  const request = (r: Partial<DeltaDiscoveryRequest>): void =>
    session.handleRequest({ node: undefined, typeUrl: TYPE_URL.endpoint, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: "", errorDetail: undefined, ...r });
  return { core, sent, session, request };
}

const delta = suite("delta protocol on one stream (no transport)");

delta("the first request must name the node", () => {
  const t = setup();
  assert.throws(() => t.request({ typeUrl: TYPE_URL.cluster }), (e: unknown) => e instanceof XdsProtocolError);
});

delta("an empty first CDS or LDS request is the legacy wildcard; an empty first EDS request is not", () => {
  const t = setup();
  t.request({ node, typeUrl: TYPE_URL.cluster });
  t.request({ typeUrl: TYPE_URL.listener });
  t.request({ typeUrl: TYPE_URL.endpoint });
  const [cds, lds, eds] = t.sent;
  assert.equal(cds?.resources.map((r) => r.name).sort(), [...(t.core.resources("gateway")?.cluster.keys() ?? [])].sort());
  assert.ok((lds?.resources.length ?? 0) > 0);
  assert.equal([eds?.typeUrl, eds?.resources.length, eds?.removedResources.length], [TYPE_URL.endpoint, 0, 0], "answered, empty");
  assert.is(t.session.status().types.endpoint?.wildcard, false);
  assert.is(t.session.status().types.cluster?.wildcard, true);
});

delta("unsubscribing '*' ends the wildcard: later changes to those resources are not pushed", () => {
  const t = setup();
  t.request({ node, typeUrl: TYPE_URL.cluster, subscribe: ["*"] });
  const first = t.sent.length;
  t.request({ typeUrl: TYPE_URL.cluster, responseNonce: t.sent[0]?.nonce, unsubscribe: ["*"] });
  assert.is(t.session.status().types.cluster?.wildcard, false);
  const clusters = t.core.resources("gateway")?.cluster.size;
  const base = echoSnapshot({ localPort: 9000, remotePort: 7001, tls: TLS });
  const echo = base.services[0]!;
  t.core.setSnapshot({ ...base, services: [echo, { ...echo, key: "demo/other", name: "other", exports: echo.exports.map((e) => ({ ...e, name: "other" })) }] });
  t.core.flush();
  assert.ok((t.core.resources("gateway")?.cluster.size ?? 0) > (clusters ?? 0), "the change adds clusters");
  assert.is(t.sent.filter((r) => r.typeUrl === TYPE_URL.cluster).length, first);
});

delta("an ACK for an unknown nonce changes nothing; the ACK of a sent nonce records exactly that response", () => {
  const t = setup();
  t.request({ node, typeUrl: TYPE_URL.cluster });
  const response = t.sent[0];
  t.request({ typeUrl: TYPE_URL.cluster, responseNonce: "999" });
  assert.is(t.session.status().types.cluster?.pending, true);
  t.request({ typeUrl: TYPE_URL.cluster, responseNonce: response?.nonce });
  const status = t.session.status().types.cluster;
  assert.equal([status?.pending, status?.ackedVersion], [false, response?.systemVersionInfo]);
  assert.equal([...t.session.served("cluster").acked.keys()].sort(), response?.resources.map((r) => r.name).sort());
});

delta.run();
