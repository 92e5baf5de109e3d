/**
 * federation/: the per-cluster federation controller. So far: the exchange,
 * the cluster's seat on the NATS JetStream bus.
 */
export { Exchange, ExchangeError, DEFAULT_LEASE_TTL_MS, type ExchangeOptions, type ExchangeStats, type ServiceChange, type ClusterChange } from "./exchange/exchange.ts";
export { connectBus, BusUnavailableError, type AdminBus, type Bus, type BusBucket, type BusEntry, type BusWatch, type ConnectBusOptions } from "./exchange/nats-bus.ts";
export { createRecordSigner, createRecordVerifier, RecordSignatureError, type RecordSigner, type RecordVerifier } from "./exchange/record-signing.ts";
export { DEFAULT_BUCKETS, MARKER_TTL_MS, REVOCATIONS_KEY, TRUST_BUNDLE_KEY, type BucketNames } from "./exchange/buckets.ts";
export {
  createBusAuthority,
  serverAuthConfig,
  mintClusterCredentials,
  mintAdminCredentials,
  connectOptionsFor,
  parseBusAuthority,
  BusAuthorityError,
  type BusAuthority,
  type BusCredentials,
} from "./exchange/bus-credentials.ts";
export { ensureBuckets, BusBucketsError, type BucketSettings } from "./exchange/bus-buckets.ts";
export { clusterPolicy, adminPolicy, assertClusterName, BusClusterNameError, BusOptionsError, type BusUserPolicy } from "./exchange/bus-permissions.ts";
export { RECORD_VERSION, type ClusterRegistration, type ServiceExportRecord, type ServicePort, type EndpointAddress } from "./exchange/records.ts";
export type { ClusterView, MergedService, ClusterExport } from "./exchange/clusterset-view.ts";
export { FederationController, type FederationControllerOptions, type ControllerLeaderElection } from "./kube/controller.ts";
export {
  LeaderElector,
  LeaderElectionOptionsError,
  LeadershipLostError,
  NotLeaderError,
  LeaseTimeoutError,
  DEFAULT_LEASE_DURATION_MS,
  DEFAULT_RENEW_DEADLINE_MS,
  DEFAULT_RETRY_PERIOD_MS,
  type LeaderElectorOptions,
  type TermEndReason,
  type Clock,
} from "./kube/leader-election.ts";
export { LeaseConflictError, LeaseApiError, LeaseInvalidError } from "./kube/lease-lock.ts";
export { DataplaneFeed, type DataplaneFeedOptions, type XdsSink } from "./kube/dataplane-feed.ts";
export { EXPORT_FINALIZER } from "./kube/export-reconciler.ts";
export { derivedServiceName } from "./kube/import-reconciler.ts";
export { LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY, MCS_GROUP, MCS_VERSION } from "./kube/mcs.ts";
export {
  parseServicePolicy,
  servicePolicySpec,
  PolicyValidationError,
  POLICY_GROUP,
  POLICY_VERSION,
  POLICY_KIND,
  POLICY_PLURAL,
  type ParsedServicePolicy,
  type ServicePolicySpec,
} from "./kube/service-policy.ts";
export {
  PolicyWatcher,
  POLICY_CONDITION_ACCEPTED,
  POLICY_REASON_ACCEPTED,
  POLICY_REASON_INVALID,
  POLICY_EVENT_INVALID,
  type PolicyWatcherOptions,
  type PolicyObject,
  type PolicyStatus,
} from "./kube/policy-watcher.ts";
export { EventRecorder, DEFAULT_REPORTING_CONTROLLER, DEFAULT_MAX_TRACKED_EVENTS, type EventRecorderOptions, type EventSpec } from "./kube/event-recorder.ts";
export { runController, startController, EXIT_BAD_CONFIG, EXIT_START_FAILED, type RunningController } from "./run/run-controller.ts";
export { loadControllerConfig, parseControllerConfig, controllerConfigSchema, ControllerConfigError, POD_NAME_ENV, type ControllerConfig, type ControllerConfigInput } from "./run/config.ts";
