/** Inner pieces that tests reach directly; other modules use index.ts. */
export * from "./index.ts";
export { ClusterSetView, serviceKey, type ClusterSetViewOptions, type ViewChange } from "./exchange/clusterset-view.ts";
export { decodeRecord, encodeRecord, exportKey, MAX_RECORD_BYTES, type DecodeResult, type RejectReason } from "./exchange/record-codec.ts";
export { canonicalJson } from "./exchange/canonical-json.ts";
export { kvSubject, kvStream } from "./exchange/buckets.ts";
export { recordEnvelope } from "./exchange/records.ts";
export { dnsLabelProblems } from "./exchange/dns-label.ts";
export { clusterInboxPrefix, clusterPolicy, adminPolicy, assertClusterName, BusClusterNameError, BusOptionsError } from "./exchange/bus-permissions.ts";
export { bucketStreamConfigs, bucketSettingsProblems } from "./exchange/bus-buckets.ts";
export { mergeExports, exportedShape, conflictsWith, type MergedImport, type ConflictReason } from "./kube/mcs.ts";
export { ImportPortAllocator, importPortKey } from "./kube/import-ports.ts";
export { localEndpointsOf } from "./kube/local-endpoints.ts";
export { KubeLeaseLock, type LeaseLock, type LeaseRecord, type ObservedLease } from "./kube/lease-lock.ts";
export { systemClock } from "./kube/leader-election.ts";
export { KubeApi, KubeApiError, FIELD_MANAGER, type KubeApiOptions } from "./kube/kube-api.ts";
export { ExportReconciler, EXPORT_FINALIZER, type ExportReconcilerOptions, type ServiceExportObject } from "./kube/export-reconciler.ts";
export { ResilientInformer, trimForCache, type ResilientInformerOptions } from "./kube/resilient-informer.ts";
export { LastApplied, bodyDigest, holds } from "./kube/last-applied.ts";
