/**
 * drill/: the local ClusterSet (real NATS, kube-apiservers, `fedgate
 * controller` and `fedgate gateway` processes on one host) and the failover
 * drill run on it by `fedgate drill`, `npm start` and the end-to-end test.
 */
export { LocalClusterSet, DRILL_NAMESPACE, DRILL_TRUST_DOMAIN, LEADER_ELECTION_NAMESPACE, LEADER_ELECTION_LEASE, controllerIdentity, type LocalClusterSetOptions } from "./local-clusterset.ts";
export { runFailoverDrill, describeShift, gatewayCounters, type GatewayCounters, DRILL_SERVICE, DRILL_SERVICE_PORT, DRILL_WEB_SERVICE, DRILL_WEB_PORT, type Protocol, type DrillReport, type LegReport, type RevocationReport, type SecurityCheck } from "./failover-drill.ts";
export { SteadyLoad, LoadFailure, tcpCall, httpCall, h2Call, alternate, shiftAfter, clusterOf, type LoadCall, type LoadSample, type Shift } from "./steady-load.ts";
export { formatDrillReport } from "./report.ts";
export { runDrill } from "./run.ts";
