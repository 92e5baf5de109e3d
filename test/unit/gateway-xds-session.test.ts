import { suite } from "uvu";
import * as assert from "uvu/assert";
import { translate, XdsCore, XdsInputError, XdsOptionsError, XdsProtocolError, ProtoRegistry, TYPE_URL, type DiscoveryRequest, type DiscoveryResponse, type FederationSnapshotInput } from "../../gateway/internal.ts";
import { echoSnapshot } from "../support/xds-harness.ts";

const PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const TLS = { trustDomain: "fedgate.test", gatewayCertChainPem: PEM, gatewayKeyPem: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n", trustBundlePems: [PEM] };
const CLA = "outbound|50051||echo.demo.svc.clusterset.local";
const registry = ProtoRegistry.load();

/** A fake clock and timer queue: time moves only when the test says so. */
function fakeTime() {
  let now = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let ids = 0;
  return {
    now: () => now,
    timers: {
      setTimeout: (fn: () => void, ms: number) => {
        timers.set(++ids, { at: now + ms, fn });
        return ids;
      },
      clearTimeout: (h: unknown) => void timers.delete(h as number),
    },
    advance(ms: number) {
      now += ms;
      for (const [id, t] of [...timers].sort(([, a], [, b]) => a.at - b.at)) {
        if (t.at > now) continue;
        timers.delete(id);
        t.fn();
      }
    },
    pending: () => timers.size,
  };
}

function setup() {
  const time = fakeTime();
  const core = new XdsCore({ registry, now: time.now, timers: time.timers, debounceMs: 10, maxDebounceMs: 50 });
  const sent: DiscoveryResponse[] = [];
  const { session, close } = core.openSession((r) => sent.push(r));
  const request = (r: Partial<DiscoveryRequest>): void =>
    session.handleRequest({ versionInfo: "", node: undefined, resourceNames: [], typeUrl: TYPE_URL.endpoint, responseNonce: "", errorDetail: undefined, ...r });
  return { time, core, sent, session, close, request };
}

const snap = (localPort: number | undefined): FederationSnapshotInput => echoSnapshot({ localPort, remotePort: 7001, tls: TLS });
const node = { id: "n1", cluster: "a", userAgentName: "gRPC Node Pure JS", dataplane: undefined };

const debounce = suite("push debounce (injected timers)");

debounce("coalesces a burst into one push after the quiet period", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.time.advance(10);
  t.request({ node, resourceNames: [CLA] });
  assert.is(t.sent.length, 1);
  t.request({ resourceNames: [CLA], responseNonce: t.sent[0]?.nonce, versionInfo: t.sent[0]?.versionInfo });
  for (let i = 0; i < 5; i++) {
    t.core.setSnapshot(snap(i % 2 ? 9000 : undefined));
    t.time.advance(5);
  }
  assert.is(t.sent.length, 1, "nothing pushed while changes keep coming");
  t.core.setSnapshot(snap(undefined));
  t.time.advance(10);
  assert.is(t.sent.length, 2, "one push for the whole burst");
});

debounce("never delays a push longer than the maximum, even under a steady trickle", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.time.advance(10);
  t.request({ node, resourceNames: [CLA] });
  t.request({ resourceNames: [CLA], responseNonce: t.sent[0]?.nonce, versionInfo: t.sent[0]?.versionInfo });
  let elapsed = 0;
  while (t.sent.length === 1 && elapsed < 200) {
    t.core.setSnapshot(snap(elapsed % 16 ? 9000 : undefined));
    t.time.advance(8);
    elapsed += 8;
  }
  assert.ok(elapsed <= 56, `pushed after ${elapsed} ms`);
});

const protocol = suite("state-of-the-world protocol on one stream");

protocol("answers the first request, then pushes only when subscribed content changes", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.core.flush();
  t.request({ node, resourceNames: [CLA] });
  const first = t.sent[0];
  assert.is(first?.resources.length, 1);
  t.request({ resourceNames: [CLA], responseNonce: first?.nonce, versionInfo: first?.versionInfo });
  t.core.setSnapshot(snap(9000));
  t.core.flush();
  assert.is(t.sent.length, 1, "identical content is not re-sent");
  t.core.setSnapshot(snap(undefined));
  t.core.flush();
  assert.is(t.sent.length, 2);
  assert.ok(Number(t.sent[1]?.versionInfo) > Number(first?.versionInfo), "versions increase");
  assert.is.not(t.sent[1]?.nonce, first?.nonce);
});

protocol("records a NACK, keeps the accepted version, and ignores a stale nonce", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.core.flush();
  t.request({ node, resourceNames: [CLA] });
  const v1 = t.sent[0];
  t.request({ resourceNames: [CLA], responseNonce: v1?.nonce, versionInfo: v1?.versionInfo });
  t.core.setSnapshot(snap(undefined));
  t.core.flush();
  const v2 = t.sent[1];
  const events: string[] = [];
  t.core.onEvent((e) => events.push(e.type));
  t.request({ resourceNames: [CLA], responseNonce: "stale", versionInfo: v1?.versionInfo, errorDetail: { code: 3, message: "ignored" } });
  assert.equal(events, [], "a stale nonce is ignored");
  t.request({ resourceNames: [CLA], responseNonce: v2?.nonce, versionInfo: v1?.versionInfo, errorDetail: { code: 3, message: "bad cla" } });
  const status = t.core.status().nodes[0]?.types.endpoint;
  assert.is(status?.ackedVersion, v1?.versionInfo);
  assert.is(status?.nacks, 1);
  assert.is(status?.lastNack?.message, "bad cla");
  assert.equal(events, ["nack"]);
});

protocol("ends a stream whose first request has no node", () => {
  const t = setup();
  assert.throws(() => t.request({ resourceNames: [CLA] }), (e: unknown) => e instanceof XdsProtocolError && e.code === "FEDGATE_XDS_PROTOCOL");
});

protocol("treats an empty LDS/CDS subscription as a wildcard but not an empty EDS one", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.core.flush();
  t.request({ node, typeUrl: TYPE_URL.cluster });
  t.request({ typeUrl: TYPE_URL.endpoint });
  assert.is(t.sent[0]?.resources.length, 1);
  assert.is(t.sent[1]?.resources.length, 0);
});

protocol("rejects invalid input with every problem and keeps serving the last good snapshot", () => {
  const t = setup();
  t.core.setSnapshot(snap(9000));
  t.core.flush();
  const before = t.core.resources("proxyless");
  const bad = { ...snap(9000), self: { cluster: "", region: "r", zone: "z" }, tls: { ...TLS, trustBundlePems: [] } };
  assert.throws(() => t.core.setSnapshot(bad), (e: unknown) => e instanceof XdsInputError && e.problems.length >= 2);
  t.core.flush();
  assert.is(t.core.resources("proxyless"), before);
});

protocol("drops an endpoint listed twice with a warning instead of failing the translation", () => {
  const t = setup();
  // 127.0.0.1:7001 is also b's gateway.
  t.core.setSnapshot({ ...snap(9000), localEndpoints: new Map([["demo/echo", [{ address: "127.0.0.1", port: 7001, zone: "z1", ready: true }]]]) });
  assert.ok(t.core.flush());
  assert.ok(t.core.status().warnings.some((w) => w.message.includes("listed twice")));
});

protocol("a translation bug is caught by validation: the snapshot is rejected whole and the last good config stays served", () => {
  let broken = false;
  const time = fakeTime();
  const core = new XdsCore({
    registry,
    now: time.now,
    timers: time.timers,
    translate: (snapshot, flavour) => {
      const out = translate(snapshot, flavour);
      if (broken) for (const r of out.resources.endpoint.values()) (r.message as { endpoints: { priority: number }[] }).endpoints.forEach((g) => (g.priority += 1));
      return out;
    },
  });
  const sent: DiscoveryResponse[] = [];
  const { session } = core.openSession((r) => sent.push(r));
  core.setSnapshot(snap(9000));
  assert.ok(core.flush());
  session.handleRequest({ versionInfo: "", node, resourceNames: [CLA], typeUrl: TYPE_URL.endpoint, responseNonce: "", errorDetail: undefined });
  const good = core.resources("proxyless");
  broken = true;
  core.setSnapshot(snap(undefined));
  assert.not.ok(core.flush());
  assert.is(core.resources("proxyless"), good);
  assert.is(sent.length, 1, "nothing invalid reached the data plane");
  const rejection = core.status().lastRejection;
  assert.ok(rejection?.problems.some((p) => p.message.includes("priority 1 is used but 0 is not")));
});

protocol("validates its options", () => {
  assert.throws(() => new XdsCore({ registry, debounceMs: 20, maxDebounceMs: 10 }), (e: unknown) => e instanceof XdsOptionsError);
});

debounce.run();
protocol.run();
