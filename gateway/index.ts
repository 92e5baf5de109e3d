/**
 * gateway/: the xDS control plane (the ADS server that translates the
 * federation exchange's merged view into Envoy v3 resources for fedgate's
 * gateway, Envoy, and proxyless gRPC) and fedgate's gateway data plane (an xDS
 * client running the import and mTLS export listeners). Other modules import
 * only from here.
 */
export { XdsServer, type XdsServerOptions } from "./xds/ads-server.ts";
export {
  XdsCore,
  DEFAULT_DEBOUNCE_MS,
  DEFAULT_MAX_DEBOUNCE_MS,
  type XdsCoreOptions,
  type XdsTimers,
  type ServerStatus,
  type NodeConfigDump,
  type TranslationRejection,
} from "./xds/xds-core.ts";
export type { NodeStatus, TypeStatus, NackRecord, SessionEvent, XdsNode, XdsProtocolKind } from "./xds/ads-session-base.ts";
export {
  parseFederationSnapshot,
  DEFAULT_SERVICE_POLICY,
  LOCALITY_LABELS,
  servicePolicySchema,
  type FederationSnapshot,
  type FederationSnapshotInput,
  type ServicePolicy,
  type ServicePolicyInput,
  type LocalEndpoint,
  type ImportPort,
  type LocalityLabel,
} from "./xds/input.ts";
export { XdsError, XdsInputError, XdsOptionsError, XdsResourceValidationError, XdsProtoLoadError, XdsServerError, XdsProtocolError } from "./xds/errors.ts";
export { ProtoRegistry } from "./xds/proto-registry.ts";
export { TYPE_URL, type ResourceKind } from "./xds/type-urls.ts";
export type { Flavour } from "./xds/translate.ts";
export * as xdsNames from "./xds/naming.ts";

// The data plane.
export { Gateway, type GatewayOptions } from "./dataplane/gateway.ts";
export { runGateway } from "./dataplane/run.ts";
export { ADS_RECEIVE_WINDOW_BYTES } from "./dataplane/ads-stream.ts";
export { loadBootstrap, parseBootstrap, type Bootstrap, type BootstrapInput } from "./dataplane/bootstrap.ts";
export { GatewayError, GatewayBootstrapError, NoHealthyUpstreamError, ListenFailedError } from "./dataplane/errors.ts";
