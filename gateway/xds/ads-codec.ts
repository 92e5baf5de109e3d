import type { DiscoveryRequest, DiscoveryResponse, XdsNode } from "./ads-session.ts";
import type { DeltaDiscoveryRequest, DeltaDiscoveryResponse } from "./delta-ads-session.ts";
import type { ProtoRegistry } from "./proto-registry.ts";
import type { EncodedResource } from "./resource-validation.ts";
import { TYPE_URL } from "./type-urls.ts";

/**
 * DiscoveryRequest/DiscoveryResponse codecs, and their Delta twins, on the loaded protos. No gRPC
 * here: the adapter (ads-server.ts) and test clients plug these in as a
 * service's serializers.
 */

const REQUEST = "envoy.service.discovery.v3.DiscoveryRequest";
const RESPONSE = "envoy.service.discovery.v3.DiscoveryResponse";
const DELTA_REQUEST = "envoy.service.discovery.v3.DeltaDiscoveryRequest";
const DELTA_RESPONSE = "envoy.service.discovery.v3.DeltaDiscoveryResponse";
export const ADS_METHOD_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
export const DELTA_ADS_METHOD_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

type Obj = Record<string, unknown>;

function obj(v: unknown): Obj | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Obj) : undefined;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

export interface AdsCodec {
  decodeRequest(bytes: Uint8Array): DiscoveryRequest;
  encodeResponse(response: DiscoveryResponse, controlPlaneId: string): Buffer;
  /** For clients: the reverse pair. */
  encodeRequest(request: DiscoveryRequest): Buffer;
  decodeResponse(bytes: Uint8Array): DecodedDiscoveryResponse;
  decodeDeltaRequest(bytes: Uint8Array): DeltaDiscoveryRequest;
  encodeDeltaResponse(response: DeltaDiscoveryResponse, controlPlaneId: string): Buffer;
  encodeDeltaRequest(request: DeltaDiscoveryRequest): Buffer;
  decodeDeltaResponse(bytes: Uint8Array): DecodedDeltaDiscoveryResponse;
}

export interface DecodedDeltaDiscoveryResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { name: string; version: string; typeUrl: string; value: Uint8Array }[];
  removedResources: string[];
}

export interface DecodedDiscoveryResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { typeUrl: string; value: Uint8Array }[];
}

function parseNode(raw: Obj): XdsNode | undefined {
  const node = obj(raw.node);
  if (!node) return undefined;
  const metadataFields = obj(obj(node.metadata)?.fields);
  const dataplane = str(obj(metadataFields?.FEDGATE_DATAPLANE)?.stringValue) || undefined;
  return { id: str(node.id), cluster: str(node.cluster), userAgentName: str(node.user_agent_name), dataplane };
}

function nodeMessage(node: XdsNode | undefined): Obj | undefined {
  if (!node) return undefined;
  return {
    id: node.id,
    cluster: node.cluster,
    user_agent_name: node.userAgentName,
    ...(node.dataplane ? { metadata: { fields: { FEDGATE_DATAPLANE: { stringValue: node.dataplane } } } } : {}),
  };
}

function errorDetail(raw: Obj): { code: number; message: string } | undefined {
  const error = obj(raw.error_detail);
  return error ? { code: Number(error.code ?? 0), message: str(error.message) } : undefined;
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.map(str) : [];
}

function bytesOf(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? v : new Uint8Array();
}

export interface AdsCodecOptions {
  /**
   * Write every encoded response into one buffer the codec keeps and grows,
   * returning a view that the next response encoding overwrites. For a caller
   * that copies the bytes out before encoding again: grpc-js's server copies a
   * serialized message into its frame in the same call. A push to 100 gateway
   * nodes then allocates one ~100 KB buffer per node (grpc-js's frame) instead
   * of two, and that external memory is what drove the server's scavenges.
   */
  reuseResponseBuffer?: boolean;
}

/** Smallest reused response buffer; it grows to the largest response encoded. */
const MIN_REUSED_RESPONSE_BYTES = 64 * 1024;

/** Joins the pieces of an encoded response, into a fresh buffer or the one reused buffer. */
function responseJoiner(reuse: boolean): (pieces: readonly Uint8Array[]) => Buffer {
  if (!reuse) return (pieces) => Buffer.concat(pieces);
  let buffer = Buffer.allocUnsafeSlow(MIN_REUSED_RESPONSE_BYTES);
  return (pieces) => {
    let length = 0;
    for (const piece of pieces) length += piece.byteLength;
    if (length > buffer.byteLength) buffer = Buffer.allocUnsafeSlow(Math.max(length, 2 * buffer.byteLength));
    let offset = 0;
    for (const piece of pieces) {
      buffer.set(piece, offset);
      offset += piece.byteLength;
    }
    return buffer.subarray(0, length);
  };
}

export function createAdsCodec(registry: ProtoRegistry, options: AdsCodecOptions = {}): AdsCodec {
  const join = responseJoiner(options.reuseResponseBuffer ?? false);
  const requestType = registry.type(REQUEST);
  const responseType = registry.type(RESPONSE);
  const deltaRequestType = registry.type(DELTA_REQUEST);
  const deltaResponseType = registry.type(DELTA_RESPONSE);
  // A resource's `resources` entry (its Any), encoded once however many
  // nodes are sent it; keyed by the shared EncodedResource, so it goes with it.
  const anyEntries = new WeakMap<EncodedResource, Uint8Array>();
  const anyEntry = (resource: EncodedResource): Uint8Array => {
    let entry = anyEntries.get(resource);
    if (!entry) {
      entry = responseType.encode(responseType.fromObject({ resources: [{ type_url: TYPE_URL[resource.kind], value: resource.bytes }] })).finish();
      anyEntries.set(resource, entry);
    }
    return entry;
  };
  // The delta twin: a `Resource` entry with name and version (the content hash), also encoded once.
  const deltaEntries = new WeakMap<EncodedResource, Uint8Array>();
  const deltaEntry = (resource: EncodedResource): Uint8Array => {
    let entry = deltaEntries.get(resource);
    if (!entry) {
      const message = { resources: [{ name: resource.name, version: resource.hash, resource: { type_url: TYPE_URL[resource.kind], value: resource.bytes } }] };
      entry = deltaResponseType.encode(deltaResponseType.fromObject(message)).finish();
      deltaEntries.set(resource, entry);
    }
    return entry;
  };
  return {
    decodeRequest(bytes) {
      // Read straight off the decoded message (unset fields read as their defaults through its
      // prototype): a plain-object copy per ACK, from 100 nodes per change, was garbage for nothing.
      const raw = obj(requestType.decode(bytes)) ?? {};
      return {
        versionInfo: str(raw.version_info),
        node: parseNode(raw),
        resourceNames: strings(raw.resource_names),
        typeUrl: str(raw.type_url),
        responseNonce: str(raw.response_nonce),
        errorDetail: errorDetail(raw),
      };
    },
    encodeResponse(response, controlPlaneId) {
      // Protobuf fields concatenate: version_info (1), the cached resources (2), then
      // type_url, nonce, control_plane (3, 5, 6), the bytes a one-piece encoding gives.
      // Plain objects of the right field types encode as they are; fromObject would only copy them.
      const head = responseType.encode({ version_info: response.versionInfo }).finish();
      const tail = responseType.encode({ type_url: response.typeUrl, nonce: response.nonce, control_plane: { identifier: controlPlaneId } }).finish();
      return join([head, ...response.resources.map(anyEntry), tail]);
    },
    encodeRequest(request) {
      const message = requestType.fromObject({
        version_info: request.versionInfo,
        node: nodeMessage(request.node),
        resource_names: request.resourceNames,
        type_url: request.typeUrl,
        response_nonce: request.responseNonce,
        error_detail: request.errorDetail,
      });
      return Buffer.from(requestType.encode(message).finish());
    },
    decodeResponse(bytes) {
      const raw = responseType.toObject(responseType.decode(bytes), { longs: String, defaults: true });
      const resources = Array.isArray(raw.resources) ? raw.resources : [];
      return {
        versionInfo: str(raw.version_info),
        typeUrl: str(raw.type_url),
        nonce: str(raw.nonce),
        resources: resources.map((r) => {
          const any = obj(r);
          return { typeUrl: str(any?.type_url), value: bytesOf(any?.value) };
        }),
      };
    },
    decodeDeltaRequest(bytes) {
      const raw = obj(deltaRequestType.decode(bytes)) ?? {};
      const initial = obj(raw.initial_resource_versions) ?? {};
      return {
        node: parseNode(raw),
        typeUrl: str(raw.type_url),
        subscribe: strings(raw.resource_names_subscribe),
        unsubscribe: strings(raw.resource_names_unsubscribe),
        initialResourceVersions: Object.fromEntries(Object.entries(initial).map(([k, v]) => [k, str(v)])),
        responseNonce: str(raw.response_nonce),
        errorDetail: errorDetail(raw),
      };
    },
    encodeDeltaResponse(response, controlPlaneId) {
      // Field order as in encodeResponse: system_version_info (1), resources (2), then the rest.
      const head = deltaResponseType.encode({ system_version_info: response.systemVersionInfo }).finish();
      const tail = deltaResponseType.encode({ type_url: response.typeUrl, nonce: response.nonce, removed_resources: response.removedResources, control_plane: { identifier: controlPlaneId } }).finish();
      return join([head, ...response.resources.map(deltaEntry), tail]);
    },
    encodeDeltaRequest(request) {
      const message = deltaRequestType.fromObject({
        node: nodeMessage(request.node),
        type_url: request.typeUrl,
        resource_names_subscribe: request.subscribe,
        resource_names_unsubscribe: request.unsubscribe,
        initial_resource_versions: request.initialResourceVersions,
        response_nonce: request.responseNonce,
        error_detail: request.errorDetail,
      });
      return Buffer.from(deltaRequestType.encode(message).finish());
    },
    decodeDeltaResponse(bytes) {
      const raw = deltaResponseType.toObject(deltaResponseType.decode(bytes), { longs: String, defaults: true });
      const resources = Array.isArray(raw.resources) ? raw.resources : [];
      return {
        systemVersionInfo: str(raw.system_version_info),
        typeUrl: str(raw.type_url),
        nonce: str(raw.nonce),
        removedResources: strings(raw.removed_resources),
        resources: resources.map((r) => {
          const entry = obj(r);
          const any = obj(entry?.resource);
          return { name: str(entry?.name), version: str(entry?.version), typeUrl: str(any?.type_url), value: bytesOf(any?.value) };
        }),
      };
    },
  };
}
