import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createAdsCodec, ProtoRegistry, TYPE_URL, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse, type EncodedResource } from "../../gateway/internal.ts";

const registry = ProtoRegistry.load();
const responseType = registry.type("envoy.service.discovery.v3.DiscoveryResponse");

function resource(name: string): EncodedResource {
  const bytes = registry.encode("envoy.config.endpoint.v3.ClusterLoadAssignment", { cluster_name: name }).bytes ?? new Uint8Array();
  return { kind: "endpoint", name, bytes, hash: name };
}

/** What protobufjs gives for the whole message in one piece. */
function onePiece(response: DiscoveryResponse, controlPlaneId: string): Buffer {
  const message = responseType.fromObject({
    version_info: response.versionInfo,
    resources: response.resources.map((r) => ({ type_url: TYPE_URL[r.kind], value: r.bytes })),
    type_url: response.typeUrl,
    nonce: response.nonce,
    control_plane: { identifier: controlPlaneId },
  });
  return Buffer.from(responseType.encode(message).finish());
}

const codec = suite("DiscoveryResponse encoding from cached resource entries");

const a = resource("a");
const b = resource("b");
const cases: { name: string; input: DiscoveryResponse }[] = [
  { name: "no resources", input: { versionInfo: "1", typeUrl: TYPE_URL.cluster, nonce: "1", resources: [] } },
  { name: "one resource", input: { versionInfo: "12", typeUrl: TYPE_URL.endpoint, nonce: "3", resources: [a] } },
  { name: "two resources, empty version", input: { versionInfo: "", typeUrl: TYPE_URL.endpoint, nonce: "40", resources: [a, b] } },
];

for (const c of cases) {
  codec(`${c.name}: byte for byte the one-piece encoding, and decodes back`, () => {
    const ads = createAdsCodec(registry);
    const bytes = ads.encodeResponse(c.input, "fedgate-test");
    assert.equal(bytes, onePiece(c.input, "fedgate-test"));
    const decoded = ads.decodeResponse(bytes);
    assert.is(decoded.versionInfo, c.input.versionInfo);
    assert.is(decoded.nonce, c.input.nonce);
    assert.is(decoded.typeUrl, c.input.typeUrl);
    assert.equal(
      decoded.resources.map((r) => [r.typeUrl, Buffer.from(r.value)]),
      c.input.resources.map((r) => [TYPE_URL[r.kind], Buffer.from(r.bytes)]),
    );
  });
}

codec("a resource sent on many streams keeps each stream's own version and nonce", () => {
  const ads = createAdsCodec(registry);
  const first = ads.decodeResponse(ads.encodeResponse({ versionInfo: "5", typeUrl: TYPE_URL.endpoint, nonce: "1", resources: [a, b] }, "cp"));
  const second = ads.decodeResponse(ads.encodeResponse({ versionInfo: "6", typeUrl: TYPE_URL.endpoint, nonce: "9", resources: [b] }, "cp"));
  assert.equal([first.versionInfo, first.nonce, first.resources.length], ["5", "1", 2]);
  assert.equal([second.versionInfo, second.nonce, second.resources.length], ["6", "9", 1]);
  assert.equal(Buffer.from(second.resources[0]?.value ?? []), Buffer.from(b.bytes));
});

codec("with a reused response buffer: the same bytes, written over by the next response (grpc-js copies before that)", () => {
  const ads = createAdsCodec(registry, { reuseResponseBuffer: true });
  const big = { ...a, name: "big", bytes: new Uint8Array(100 * 1024).fill(7) };
  const bigResponse: DiscoveryResponse = { versionInfo: "5", typeUrl: TYPE_URL.endpoint, nonce: "1", resources: [big, a] };
  const first = ads.encodeResponse(bigResponse, "cp");
  assert.equal(Buffer.from(first), onePiece(bigResponse, "cp"));
  const small: DiscoveryResponse = { versionInfo: "6", typeUrl: TYPE_URL.endpoint, nonce: "9", resources: [b] };
  const second = ads.encodeResponse(small, "cp");
  assert.equal(Buffer.from(second), onePiece(small, "cp"));
  assert.is(second.buffer, first.buffer, "one buffer, grown once to the largest response");
  assert.equal(Buffer.from(first.subarray(0, second.byteLength)), onePiece(small, "cp"));
  const deltaResponse: DeltaDiscoveryResponse = { systemVersionInfo: "7", typeUrl: TYPE_URL.endpoint, nonce: "2", resources: [big], removedResources: ["x"] };
  const third = ads.encodeDeltaResponse(deltaResponse, "cp");
  assert.is(third.buffer, first.buffer);
  const decoded = ads.decodeDeltaResponse(Buffer.from(third));
  assert.equal([decoded.nonce, decoded.removedResources, decoded.resources.map((r) => r.value.byteLength)], ["2", ["x"], [100 * 1024]]);
});

codec("without it, each response has its own bytes", () => {
  const ads = createAdsCodec(registry);
  const first = ads.encodeResponse({ versionInfo: "5", typeUrl: TYPE_URL.endpoint, nonce: "1", resources: [a, b] }, "cp");
  const kept = Buffer.from(first);
  ads.encodeResponse({ versionInfo: "6", typeUrl: TYPE_URL.endpoint, nonce: "9", resources: [b] }, "cp");
  assert.equal(first, kept);
});

codec.run();

const deltaResponseType = registry.type("envoy.service.discovery.v3.DeltaDiscoveryResponse");

function deltaOnePiece(response: DeltaDiscoveryResponse, controlPlaneId: string): Buffer {
  const message = deltaResponseType.fromObject({
    system_version_info: response.systemVersionInfo,
    resources: response.resources.map((r) => ({ name: r.name, version: r.hash, resource: { type_url: TYPE_URL[r.kind], value: r.bytes } })),
    type_url: response.typeUrl,
    removed_resources: response.removedResources,
    nonce: response.nonce,
    control_plane: { identifier: controlPlaneId },
  });
  return Buffer.from(deltaResponseType.encode(message).finish());
}

const delta = suite("DeltaDiscoveryResponse/Request encoding");

const deltaCases: { name: string; input: DeltaDiscoveryResponse }[] = [
  { name: "nothing (a first answer)", input: { systemVersionInfo: "1", typeUrl: TYPE_URL.cluster, nonce: "1", resources: [], removedResources: [] } },
  { name: "upserts only", input: { systemVersionInfo: "7", typeUrl: TYPE_URL.endpoint, nonce: "2", resources: [a, b], removedResources: [] } },
  { name: "upserts and removals", input: { systemVersionInfo: "8", typeUrl: TYPE_URL.endpoint, nonce: "3", resources: [b], removedResources: ["x", "y"] } },
];

for (const c of deltaCases) {
  delta(`${c.name}: byte for byte the one-piece encoding, and decodes back`, () => {
    const ads = createAdsCodec(registry);
    const bytes = ads.encodeDeltaResponse(c.input, "fedgate-test");
    assert.equal(bytes, deltaOnePiece(c.input, "fedgate-test"));
    const decoded = ads.decodeDeltaResponse(bytes);
    assert.equal([decoded.systemVersionInfo, decoded.nonce, decoded.typeUrl, decoded.removedResources], [c.input.systemVersionInfo, c.input.nonce, c.input.typeUrl, c.input.removedResources]);
    assert.equal(
      decoded.resources.map((r) => [r.name, r.version, r.typeUrl, Buffer.from(r.value)]),
      c.input.resources.map((r) => [r.name, r.hash, TYPE_URL[r.kind], Buffer.from(r.bytes)]),
    );
  });
}

delta("a request round-trips: node, subscriptions, initial versions, nonce, error detail", () => {
  const ads = createAdsCodec(registry);
  const request: DeltaDiscoveryRequest = {
    node: { id: "n", cluster: "c", userAgentName: "ua", dataplane: "gateway" },
    typeUrl: TYPE_URL.endpoint,
    subscribe: ["*", "a"],
    unsubscribe: ["b"],
    initialResourceVersions: { a: "h1", c: "h2" },
    responseNonce: "4",
    errorDetail: { code: 3, message: "bad" },
  };
  assert.equal(ads.decodeDeltaRequest(ads.encodeDeltaRequest(request)), request);
});

delta.run();

const requests = suite("DiscoveryRequest decoding, straight off the decoded message");

const sotwRequests: { name: string; input: DiscoveryRequest }[] = [
  {
    name: "a first request: node with its data plane, names",
    input: { versionInfo: "", node: { id: "n", cluster: "c", userAgentName: "envoy", dataplane: "proxyless" }, resourceNames: ["a", "b"], typeUrl: TYPE_URL.cluster, responseNonce: "", errorDetail: undefined },
  },
  { name: "a bare ACK: no node, no names (unset fields read as their defaults)", input: { versionInfo: "7", node: undefined, resourceNames: [], typeUrl: TYPE_URL.endpoint, responseNonce: "3", errorDetail: undefined } },
  { name: "a NACK", input: { versionInfo: "6", node: undefined, resourceNames: ["a"], typeUrl: TYPE_URL.route, responseNonce: "4", errorDetail: { code: 3, message: "bad route" } } },
];

for (const c of sotwRequests) {
  requests(`${c.name}: round-trips`, () => {
    const ads = createAdsCodec(registry);
    assert.equal(ads.decodeRequest(ads.encodeRequest(c.input)), c.input);
  });
}

requests("a bare delta ACK round-trips: no node, nothing (un)subscribed, no initial versions", () => {
  const ads = createAdsCodec(registry);
  const request: DeltaDiscoveryRequest = { node: undefined, typeUrl: TYPE_URL.listener, subscribe: [], unsubscribe: [], initialResourceVersions: {}, responseNonce: "12", errorDetail: undefined };
  assert.equal(ads.decodeDeltaRequest(ads.encodeDeltaRequest(request)), request);
});

requests.run();
