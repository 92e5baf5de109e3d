/**
 * Stable resource names. Data planes key their state by these names, so they
 * never change for a given service port; a rename would be a delete plus an
 * add on every node.
 *
 * | resource | name |
 * |---|---|
 * | Cluster / ClusterLoadAssignment (import) | `outbound\|<port>\|\|<svc>.<ns>.svc.clusterset.local` (Istio's shape) |
 * | Cluster / ClusterLoadAssignment (export backends) | `inbound\|<port>\|\|<svc>.<ns>.svc.cluster.local` |
 * | RouteConfiguration (proxyless, one per service port) | `<svc>.<ns>.svc.clusterset.local:<port>` |
 * | import Listener and its RouteConfiguration (gateway data planes, one per listen port, virtual host per service) | `fedgate-import-<port>`: the port the controller allocated to the import, else the service port |
 * | API Listener (proxyless gRPC, `xds:///<name>`) | `<svc>.<ns>.svc.clusterset.local:<port>`, plus the policy's aliases |
 * | export Listener | `fedgate-export-15443` |
 * | SNI of an export | `outbound_.<port>_._.<svc>.<ns>.svc.clusterset.local` (Istio's AUTO_PASSTHROUGH SNI) |
 * | Secrets | `fedgate-gateway-cert`, `fedgate-trust-bundle` |
 */

export const CLUSTERSET_DOMAIN = "svc.clusterset.local";
export const EXPORT_LISTENER_PORT = 15443;
export const EXPORT_LISTENER_NAME = `fedgate-export-${EXPORT_LISTENER_PORT}`;
export const GATEWAY_CERT_SECRET = "fedgate-gateway-cert";
export const TRUST_BUNDLE_SECRET = "fedgate-trust-bundle";

export interface ServiceRef {
  namespace: string;
  name: string;
}

export function clustersetHost(svc: ServiceRef): string {
  return `${svc.name}.${svc.namespace}.${CLUSTERSET_DOMAIN}`;
}

export function outboundClusterName(svc: ServiceRef, port: number): string {
  return `outbound|${port}||${clustersetHost(svc)}`;
}

export function inboundClusterName(svc: ServiceRef, port: number): string {
  return `inbound|${port}||${svc.name}.${svc.namespace}.svc.cluster.local`;
}

export function routeName(svc: ServiceRef, port: number): string {
  return `${clustersetHost(svc)}:${port}`;
}

export function importListenerName(port: number): string {
  return `fedgate-import-${port}`;
}

export function apiListenerName(svc: ServiceRef, port: number): string {
  return `${clustersetHost(svc)}:${port}`;
}

export function exportSni(svc: ServiceRef, port: number): string {
  return `outbound_.${port}_._.${clustersetHost(svc)}`;
}
