import type { ClusterExport } from "../exchange/clusterset-view.ts";
import type { ServiceExportRecord, ServicePort } from "../exchange/records.ts";

/**
 * The Multi-Cluster Services rules (KEP-1645) as pure functions: what a
 * Service exports, how exports of one service merge into a ServiceImport, and
 * which exports conflict with the winner (the oldest export).
 */

export const MCS_GROUP = "multicluster.x-k8s.io";
export const MCS_VERSION = "v1alpha1";
export const LABEL_SERVICE_NAME = "multicluster.kubernetes.io/service-name";
export const LABEL_SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster";
export const LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by";
/** A label value, so no "/": the managed-by convention is a domain-like name. */
export const MANAGED_BY = "controller.fedgate.io";
/** Marks every ServiceImport and derived Service fedgate owns; an object without it is never touched. */
export const LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by";
export const APP_MANAGED_BY = "fedgate";

export type ConflictReason = "PortConflict" | "TypeConflict" | "SessionAffinityConflict";

export interface ServiceShape {
  clusterIP?: string;
  type?: string;
  ports: { name?: string; protocol?: string; port: number; appProtocol?: string }[];
  sessionAffinity?: string;
  sessionAffinityTimeoutSeconds?: number;
}

export interface EndpointShape {
  ready: boolean;
  zone?: string;
}

/** The part of an export record that comes from the Service and its endpoints. */
export function exportedShape(service: ServiceShape, endpoints: readonly EndpointShape[]): Pick<ServiceExportRecord, "ports" | "type" | "sessionAffinity" | "sessionAffinityTimeoutSeconds" | "readyEndpoints"> {
  const byZone = new Map<string, number>();
  for (const e of endpoints) if (e.ready) byZone.set(e.zone ?? "", (byZone.get(e.zone ?? "") ?? 0) + 1);
  const affinity = service.sessionAffinity === "ClientIP" ? "ClientIP" : "None";
  return {
    ports: service.ports.map((p) => ({
      ...(p.name ? { name: p.name } : {}),
      protocol: p.protocol === "UDP" || p.protocol === "SCTP" ? p.protocol : "TCP",
      port: p.port,
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    })),
    type: service.clusterIP === "None" ? "Headless" : "ClusterSetIP",
    sessionAffinity: affinity,
    ...(affinity === "ClientIP" && service.sessionAffinityTimeoutSeconds ? { sessionAffinityTimeoutSeconds: service.sessionAffinityTimeoutSeconds } : {}),
    readyEndpoints: [...byZone].sort(([a], [b]) => a.localeCompare(b)).map(([zone, ready]) => ({ zone, ready })),
  };
}

const portKey = (p: ServicePort) => (p.name ? `name:${p.name}` : `port:${p.protocol}/${p.port}`);
const samePort = (a: ServicePort, b: ServicePort) => a.protocol === b.protocol && a.port === b.port;

/** Reasons `candidate` cannot merge with `winner`; empty when it merges. */
export function conflictsWith(winner: ClusterExport, candidate: ClusterExport): ConflictReason[] {
  const reasons: ConflictReason[] = [];
  const winnerPorts = new Map(winner.ports.map((p) => [portKey(p), p]));
  if (candidate.ports.some((p) => {
    const w = winnerPorts.get(portKey(p));
    return w !== undefined && !samePort(w, p);
  })) reasons.push("PortConflict");
  if (candidate.type !== winner.type) reasons.push("TypeConflict");
  if (candidate.sessionAffinity !== winner.sessionAffinity) reasons.push("SessionAffinityConflict");
  return reasons;
}

export interface MergedImport {
  type: "ClusterSetIP" | "Headless";
  ports: ServicePort[];
  sessionAffinity: "None" | "ClientIP";
  sessionAffinityTimeoutSeconds?: number;
  /** Every exporting cluster, sorted. */
  clusters: string[];
  /** Conflict reasons per exporting cluster; absent for clusters without conflict. */
  conflicts: Map<string, ConflictReason[]>;
}

/**
 * Merges the exports of one service (oldest first, as the exchange orders
 * them). The oldest export wins every conflict; ports are the union, merged by
 * name, then by protocol and port, and a port that conflicts keeps the winner's
 * definition.
 */
export function mergeExports(exports: readonly ClusterExport[]): MergedImport | undefined {
  const [winner] = exports;
  if (!winner) return undefined;
  const ports = new Map(winner.ports.map((p) => [portKey(p), p]));
  const conflicts = new Map<string, ConflictReason[]>();
  for (const e of exports.slice(1)) {
    const reasons = conflictsWith(winner, e);
    if (reasons.length) conflicts.set(e.cluster, reasons);
    for (const p of e.ports) if (!ports.has(portKey(p))) ports.set(portKey(p), p);
  }
  // Every conflicting export is flagged, the winner too: the conflict is shared.
  if (conflicts.size) conflicts.set(winner.cluster, [...new Set([...conflicts.values()].flat())].sort());
  return {
    type: winner.type,
    ports: [...ports.values()],
    sessionAffinity: winner.sessionAffinity,
    ...(winner.sessionAffinityTimeoutSeconds ? { sessionAffinityTimeoutSeconds: winner.sessionAffinityTimeoutSeconds } : {}),
    clusters: [...new Set(exports.map((e) => e.cluster))].sort(),
    conflicts,
  };
}
