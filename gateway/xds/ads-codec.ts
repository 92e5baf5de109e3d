import type { DiscoveryRequest, DiscoveryResponse, XdsNode } from "./ads-session.ts";
import type { ProtoRegistry } from "./proto-registry.ts";
import type { EncodedResource } from "./resource-validation.ts";
import { TYPE_URL } from "./type-urls.ts";

/**
 * DiscoveryRequest/DiscoveryResponse codecs on the loaded protos. No gRPC
 * here: the adapter (ads-server.ts) and test clients plug these in as a
 * service's serializers.
 */

const REQUEST = "envoy.service.discovery.v3.DiscoveryRequest";
const RESPONSE = "envoy.service.discovery.v3.DiscoveryResponse";
export const ADS_METHOD_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

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
}

export interface DecodedDiscoveryResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: { typeUrl: string; value: Uint8Array }[];
}

export function createAdsCodec(registry: ProtoRegistry): AdsCodec {
  const requestType = registry.type(REQUEST);
  const responseType = registry.type(RESPONSE);
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
  return {
    decodeRequest(bytes) {
      const raw = requestType.toObject(requestType.decode(bytes), { longs: String, enums: String, defaults: true });
      const node = obj(raw.node);
      const metadataFields = obj(obj(node?.metadata)?.fields);
      const dataplane = str(obj(metadataFields?.FEDGATE_DATAPLANE)?.stringValue) || undefined;
      const error = obj(raw.error_detail);
      const parsedNode: XdsNode | undefined = node ? { id: str(node.id), cluster: str(node.cluster), userAgentName: str(node.user_agent_name), dataplane } : undefined;
      return {
        versionInfo: str(raw.version_info),
        node: parsedNode,
        resourceNames: Array.isArray(raw.resource_names) ? raw.resource_names.map(str) : [],
        typeUrl: str(raw.type_url),
        responseNonce: str(raw.response_nonce),
        errorDetail: error ? { code: Number(error.code ?? 0), message: str(error.message) } : undefined,
      };
    },
    encodeResponse(response, controlPlaneId) {
      // Protobuf fields concatenate: version_info (1), the cached resources (2), then
      // type_url, nonce, control_plane (3, 5, 6), the bytes a one-piece encoding gives.
      const head = responseType.encode(responseType.fromObject({ version_info: response.versionInfo })).finish();
      const tail = responseType.encode(responseType.fromObject({ type_url: response.typeUrl, nonce: response.nonce, control_plane: { identifier: controlPlaneId } })).finish();
      return Buffer.concat([head, ...response.resources.map(anyEntry), tail]);
    },
    encodeRequest(request) {
      const node = request.node
        ? {
            id: request.node.id,
            cluster: request.node.cluster,
            user_agent_name: request.node.userAgentName,
            ...(request.node.dataplane ? { metadata: { fields: { FEDGATE_DATAPLANE: { stringValue: request.node.dataplane } } } } : {}),
          }
        : undefined;
      const message = requestType.fromObject({
        version_info: request.versionInfo,
        node,
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
          return { typeUrl: str(any?.type_url), value: any?.value instanceof Uint8Array ? any.value : new Uint8Array() };
        }),
      };
    },
  };
}
