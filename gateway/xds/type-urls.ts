/** The resource types fedgate serves over ADS, in the order Envoy wants them (CDS before EDS, LDS before RDS). */
export const TYPE_URL = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  secret: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
} as const;

export type ResourceKind = keyof typeof TYPE_URL;
export type XdsTypeUrl = (typeof TYPE_URL)[ResourceKind];

export const RESOURCE_KINDS: readonly ResourceKind[] = ["cluster", "endpoint", "listener", "route", "secret"];

const KIND_BY_URL = new Map<string, ResourceKind>(RESOURCE_KINDS.map((k) => [TYPE_URL[k], k]));

export function kindOfTypeUrl(typeUrl: string): ResourceKind | undefined {
  return KIND_BY_URL.get(typeUrl);
}

/** In state-of-the-world, an empty subscription is a wildcard only for these (Envoy's legacy wildcard). */
export function wildcardWhenEmpty(kind: ResourceKind): boolean {
  return kind === "cluster" || kind === "listener";
}

export const TYPE_PREFIX = "type.googleapis.com/";

/** The fully qualified proto message name of a type URL. */
export function messageNameOf(typeUrl: string): string {
  return typeUrl.startsWith(TYPE_PREFIX) ? typeUrl.slice(TYPE_PREFIX.length) : typeUrl.slice(typeUrl.lastIndexOf("/") + 1);
}
