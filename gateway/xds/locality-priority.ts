import type { LocalityLabel } from "./input.ts";

/** Where a group of endpoints lives, and where the receiving data plane lives. */
export interface LocalityPlace {
  cluster: string;
  region: string;
  zone: string;
  network: string;
}

export interface FailoverPreference {
  clusterOrder: readonly string[];
  labels: readonly LocalityLabel[];
}

function labelValue(place: LocalityPlace, label: LocalityLabel): string {
  switch (label) {
    case "topology.kubernetes.io/region":
      return place.region;
    case "topology.kubernetes.io/zone":
      return place.zone;
    case "fedgate.io/cluster":
      return place.cluster;
    case "fedgate.io/network":
      return place.network;
  }
}

/**
 * The raw tier of one group relative to the receiver:
 * 0 for the receiver's own cluster; then one tier per cluster of the explicit
 * order; then Istio `failoverPriority` on the labels (all N labels match, then
 * the first N-1, ... then none).
 */
export function failoverTier(receiver: LocalityPlace, group: LocalityPlace, preference: FailoverPreference): number {
  if (group.cluster === receiver.cluster) return 0;
  const ordered = preference.clusterOrder.indexOf(group.cluster);
  if (ordered >= 0) return 1 + ordered;
  let matched = 0;
  for (const label of preference.labels) {
    if (labelValue(group, label) !== labelValue(receiver, label)) break;
    matched += 1;
  }
  return 1 + preference.clusterOrder.length + (preference.labels.length - matched);
}

/** EDS priorities for the groups, compacted to 0..k with no gaps (gRPC rejects a gap). */
export function localityPriorities(receiver: LocalityPlace, groups: readonly LocalityPlace[], preference: FailoverPreference): number[] {
  const tiers = groups.map((g) => failoverTier(receiver, g, preference));
  const distinct = [...new Set(tiers)].sort((a, b) => a - b);
  return tiers.map((t) => distinct.indexOf(t));
}
