/** For tests: gateway/ internals beyond the public face. */
export * from "./index.ts";
export { translate, Translator, emptyResourceSet, type ResourceSet, type TranslatedResource, type Translation } from "./xds/translate.ts";
export { validateAndEncode, EncodedResourceCache, type EncodedSet, type EncodedResource } from "./xds/resource-validation.ts";
export { failoverTier, localityPriorities, type LocalityPlace } from "./xds/locality-priority.ts";
export { AdsSession, flavourOf, type DiscoveryRequest, type DiscoveryResponse } from "./xds/ads-session.ts";
export { createAdsCodec, ADS_METHOD_PATH, type AdsCodec, type DecodedDiscoveryResponse } from "./xds/ads-codec.ts";
export { redactSecrets } from "./xds/introspection-http.ts";
export { FederationSnapshotParser } from "./xds/input.ts";
export type { ProtoMessage } from "./xds/proto-registry.ts";
export { UpstreamCluster, UpstreamHost } from "./dataplane/upstream-cluster.ts";
export { MetricsRegistry, gatewayMetrics, type GatewayMetrics } from "./dataplane/metrics.ts";
export {
  parseCluster,
  parseListener,
  parseLoadAssignment,
  parseRouteConfiguration,
  parseSecret,
  type ClusterSpec,
  type EndpointSpec,
  type LoadAssignmentSpec,
  type ListenerSpec,
  type RouteConfigSpec,
} from "./dataplane/resources.ts";
export { matchRoute, matchVirtualHost } from "./dataplane/http-router.ts";
export { DeltaAdsSession, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse } from "./xds/delta-ads-session.ts";
export { DELTA_ADS_METHOD_PATH, type DecodedDeltaDiscoveryResponse } from "./xds/ads-codec.ts";
export { ReplayBody } from "./dataplane/replay-body.ts";
export { replayed } from "./dataplane/replayed-socket.ts";
export { MAX_HEADER_BYTES, H2_MAX_HEADER_LIST_BYTES } from "./dataplane/http-listener.ts";
export { probe, probeThroughPeer } from "./dataplane/health-probe.ts";
export { ResponseParser, UpstreamProtocolError, MAX_RESPONSE_HEAD_BYTES, type ResponseHead } from "./dataplane/http-response-parser.ts";
export { H1Connection } from "./dataplane/http-h1-connection.ts";
export { RequestParser, DownstreamProtocolError, type RequestHead } from "./dataplane/http-request-parser.ts";
export { H1ServerConnection, KEEP_ALIVE_IDLE_TIMEOUT_MS } from "./dataplane/http-h1-downstream.ts";
export type { AttemptResult } from "./dataplane/http-attempt.ts";
export type { BodyFraming } from "./dataplane/http-downstream.ts";
export * from "./dataplane/mux-framing.ts";
export { MuxSession, MuxStream, MuxStreamRefusedError, type MuxStreamHandlers } from "./dataplane/mux-session.ts";
export { MuxStreamDuplex, MuxStreamResetError } from "./dataplane/mux-stream-duplex.ts";
export { SharedReadBuffer, SocketReader, SHARED_READ_BUFFER_BYTES } from "./dataplane/socket-reads.ts";
