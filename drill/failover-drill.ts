import { readFileSync } from "node:fs";
import { Agent } from "node:http";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import type { ServicePolicySpec } from "../federation/index.ts";
import { xdsNames } from "../gateway/index.ts";
import { RootCa } from "../trust/index.ts";
import { waitFor } from "../test/env/index.ts";
import { DRILL_NAMESPACE, DRILL_TRUST_DOMAIN, type LocalClusterSet } from "./local-clusterset.ts";
import { SteadyLoad, alternate, clusterOf, h2Call, httpCall, shiftAfter, tcpCall, type LoadCall, type Shift } from "./steady-load.ts";

/**
 * The failover drill on a local ClusterSet of three clusters (A, B, C):
 * service S is exported by A and B and called from A and C under steady L4
 * load (a new connection per request). From A, S is served by A; from C, by B,
 * the first peer of C's preference order. Then, one fault at a time, with the
 * failed requests and times reported (never asserted here):
 * 1. A's endpoints die: A's traffic moves to B.
 * 2. A's endpoints come back: A's traffic returns to A.
 * 3. B's gateway process is killed: C's traffic moves to A.
 * 4. B's gateway restarts: C's traffic returns to B.
 * Then, under steady L7 load (HTTP/1.1 kept-alive requests and h2 streams of
 * long-lived sessions, taking turns; HTTP health checks) on service web, exported
 * and called the same way:
 * 5. A's HTTP endpoints die: A's requests move to B.
 * 6. They come back: A's requests return to A.
 * 7. B's gateway process is killed: C's requests move to A (replay-safe
 *    requests cut on a pooled connection are retried there).
 * 8. B's gateway restarts: C's requests return to B.
 * 9. B is revoked (a root-signed revocation list on the bus): C's requests
 *    move to A, and B drops out of A's and C's ServiceImports.
 * And at A's export listener, a client of another trust domain or of the
 * revoked cluster is refused while a ClusterSet member is served.
 */

export const DRILL_SERVICE = "echo";
export const DRILL_SERVICE_PORT = 9000;
/** The L7 service: HTTP echo backends answering with `x-backend: <cluster>/<replica>`. */
export const DRILL_WEB_SERVICE = "web";
export const DRILL_WEB_PORT = 8080;
const LOAD_WORKERS = 4;
/** Traffic has settled once this many consecutive replies came from the expected cluster. */
const SETTLED_STREAK = 40;
const SETTLE_TIMEOUT_MS = 60_000;
const STEADY_STATE_MS = 2_000;
const STARTUP_STREAK = 20;

/**
 * Short ejections and 1 s health checks, so a restored backend or gateway is
 * back within seconds. HTTP services are checked with a GET of their health path.
 */
const failoverTuning = (clusterOrder: string[], protocol: "tcp" | "http"): ServicePolicySpec => ({
  failover: { clusterOrder },
  outlierDetection: { consecutive5xx: 3, intervalMs: 1_000, baseEjectionMs: 2_000 },
  healthCheck: { intervalMs: 1_000, timeoutMs: 500, unhealthyThreshold: 2, healthyThreshold: 1, ...(protocol === "http" ? { http: { path: DRILL_HEALTH_PATH } } : {}) },
});
/** What the drill's HTTP backends answer health checks on (test/support/l7-harness.ts). */
const DRILL_HEALTH_PATH = "/healthz";

export type Protocol = "L4" | "L7";

export interface LegReport {
  /** L4: a new TCP connection per request; L7: HTTP/1.1 requests over kept-alive connections and h2 streams, taking turns. */
  protocol: Protocol;
  name: string;
  /** Whose load the leg watches, and where its traffic should end up. */
  caller: string;
  expected: string;
  /** Requests, failures, and ms from the fault (or repair) until the first reply from, and settling on, `expected`. */
  shift: Shift;
  /** What the caller's gateway counted meanwhile: connect attempts that failed, retries on another endpoint, ejections. */
  gateway: GatewayCounters;
  /** The other caller's load over the same window: it should not notice. */
  bystander: { caller: string; shift: Shift };
}

export interface GatewayCounters {
  connectFailures: number;
  failovers: number;
  ejections: number;
}

const COUNTERS: Record<keyof GatewayCounters, string> = {
  connectFailures: "fedgate_gateway_upstream_connect_failures_total",
  failovers: "fedgate_gateway_failovers_total",
  ejections: "fedgate_gateway_outlier_ejections_total",
};

/** Sums every series of each counter in a Prometheus text exposition. */
export function gatewayCounters(text: string): GatewayCounters {
  const sum = (metric: string) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(`${metric}{`) || line.startsWith(`${metric} `))
      .reduce((total, line) => total + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
  return { connectFailures: sum(COUNTERS.connectFailures), failovers: sum(COUNTERS.failovers), ejections: sum(COUNTERS.ejections) };
}

export interface SecurityCheck {
  name: string;
  expected: "refused" | "served";
  outcome: "refused" | "served";
  detail: string;
}

/** After a cluster's revocation: which clusters each caller's ServiceImports still list. */
export interface RevocationReport {
  revoked: string;
  /** Per caller, per service: the ServiceImport's `status.clusters`. */
  importsAfter: Record<string, Record<string, string[]>>;
}

export interface DrillReport {
  service: string;
  clusters: { exporters: string[]; callers: string[] };
  steadyState: { caller: string; servedBy: Record<string, number>; failures: number }[];
  legs: LegReport[];
  revocation: RevocationReport;
  security: SecurityCheck[];
  totals: { requests: number; failedNewConnections: number; failedInFlight: number; failedRequests: number };
}

export async function runFailoverDrill(set: LocalClusterSet, progress: (line: string) => void = () => {}): Promise<DrillReport> {
  const [a, b, c] = set.clusterNames as [string, string, string];
  progress(`deploying ${DRILL_SERVICE} (L4) and ${DRILL_WEB_SERVICE} (HTTP) in ${a} and ${b}, exporting them, preferring ${b} from ${c}`);
  for (const [service, port, protocol] of [
    [DRILL_SERVICE, DRILL_SERVICE_PORT, "tcp"],
    [DRILL_WEB_SERVICE, DRILL_WEB_PORT, "http"],
  ] as const) {
    for (const exporter of [a, b]) await set.deployEcho(exporter, service, { replicas: 2, port, protocol });
    await set.setPolicy(a, service, failoverTuning([b], protocol));
    await set.setPolicy(c, service, failoverTuning([b, a], protocol));
    await set.exportService(a, service);
    await set.exportService(b, service);
  }

  const agent = new Agent({ keepAlive: true, maxSockets: LOAD_WORKERS * 2 });
  const calls = new Map<string, LoadCall>();
  const sessions: { close(): void }[] = [];
  for (const caller of [a, c]) {
    const tcpPort = await set.importPort(caller, DRILL_SERVICE);
    const httpPort = await set.importPort(caller, DRILL_WEB_SERVICE);
    progress(`${caller}'s import ports from its derived EndpointSlices: ${DRILL_SERVICE} ${tcpPort}, ${DRILL_WEB_SERVICE} ${httpPort}`);
    calls.set(`L4:${caller}`, tcpCall(set.host, tcpPort));
    const authority = `${DRILL_WEB_SERVICE}.${DRILL_NAMESPACE}.svc.clusterset.local:${DRILL_WEB_PORT}`;
    const h2 = h2Call({ host: set.host, port: httpPort, authority });
    sessions.push(h2);
    calls.set(`L7:${caller}`, alternate([httpCall({ host: set.host, port: httpPort, authority, agent }), h2.call]));
  }
  const callOf = (protocol: Protocol, caller: string) => calls.get(`${protocol}:${caller}`) as LoadCall;
  for (const protocol of ["L4", "L7"] as const) {
    for (const [caller, expected] of [
      [a, a],
      [c, b],
    ] as const) {
      // A streak, not one reply: until the policy reaches the gateway, two peers may share a priority.
      await waitFor(
        `${caller}'s ${protocol} calls served by ${expected}`,
        async () => {
          for (let i = 0; i < STARTUP_STREAK; i++) if (clusterOf(await callOf(protocol, caller)()) !== expected) return undefined;
          return true;
        },
        { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 200 },
      );
    }
  }

  const loads = new Map<string, SteadyLoad>();
  const startLoads = (protocol: Protocol) => {
    for (const caller of [a, c]) loads.set(caller, new SteadyLoad({ call: callOf(protocol, caller), workers: LOAD_WORKERS }));
  };
  const loadOf = (caller: string) => loads.get(caller) as SteadyLoad;
  const finished: SteadyLoad[] = [];
  const stopLoads = async () => {
    const stopping = [...loads.values()];
    loads.clear();
    await Promise.all(stopping.map((l) => l.stop()));
    finished.push(...stopping);
  };
  const legs: LegReport[] = [];
  startLoads("L4");
  try {
    await sleep(STEADY_STATE_MS);
    const steadyState = [a, c].map((caller) => {
      const shift = shiftAfter(loadOf(caller).samples, 0, caller);
      return { caller, servedBy: shift.servedBy, failures: shift.failedNewConnections + shift.failedInFlight + shift.failedRequests };
    });
    progress(`steady state: ${steadyState.map((s) => `${s.caller} served by ${JSON.stringify(s.servedBy)}`).join("; ")}`);

    const leg = async (protocol: Protocol, name: string, caller: string, bystander: string, expected: string, act: () => Promise<void>) => {
      progress(`${name} ...`);
      const load = loadOf(caller);
      const from = load.now();
      const bystanderFrom = loadOf(bystander).now();
      const bystanderServer = clusterOf(lastServed(loadOf(bystander))) ?? "";
      const before = gatewayCounters(await set.gatewayMetrics(caller));
      await act();
      await waitFor(`${caller}'s traffic settled on ${expected} after "${name}"`, async () => (settled(load, from, expected) ? true : undefined), {
        timeoutMs: SETTLE_TIMEOUT_MS,
        intervalMs: 50,
      }).catch((err: unknown) => progress(`  not settled: ${String(err)}`));
      const after = gatewayCounters(await set.gatewayMetrics(caller));
      const report: LegReport = {
        protocol,
        name,
        caller,
        expected,
        shift: shiftAfter(load.samples, from, expected),
        gateway: { connectFailures: after.connectFailures - before.connectFailures, failovers: after.failovers - before.failovers, ejections: after.ejections - before.ejections },
        bystander: { caller: bystander, shift: shiftAfter(loadOf(bystander).samples, bystanderFrom, bystanderServer) },
      };
      legs.push(report);
      progress(`  ${describeShift(report.shift)}; ${caller}'s gateway: ${JSON.stringify(report.gateway)}`);
    };

    await leg("L4", `${a}'s endpoints die`, a, c, b, () => set.killEndpoints(a, DRILL_SERVICE));
    await leg("L4", `${a}'s endpoints come back`, a, c, a, () => set.restoreEndpoints(a, DRILL_SERVICE));
    await leg("L4", `${b}'s gateway is killed`, c, a, a, () => set.killGateway(b));
    await leg("L4", `${b}'s gateway restarts`, c, a, b, () => set.restartGateway(b));
    await stopLoads();

    startLoads("L7");
    await sleep(STEADY_STATE_MS);
    await leg("L7", `${a}'s HTTP endpoints die`, a, c, b, () => set.killEndpoints(a, DRILL_WEB_SERVICE));
    await leg("L7", `${a}'s HTTP endpoints come back`, a, c, a, () => set.restoreEndpoints(a, DRILL_WEB_SERVICE));
    await leg("L7", `${b}'s gateway is killed`, c, a, a, () => set.killGateway(b));
    await leg("L7", `${b}'s gateway restarts`, c, a, b, () => set.restartGateway(b));
    await leg("L7", `${b} is revoked`, c, a, a, () => set.revokeClusters([b]));
    await stopLoads();

    const revocation = await importsWithout(set, b, [a, c], progress);
    const security = await securityChecks(set, { exporter: a, member: c, revoked: b });
    const all = finished.flatMap((l) => l.samples);
    return {
      service: `${DRILL_NAMESPACE}/${DRILL_SERVICE} (L4) and ${DRILL_NAMESPACE}/${DRILL_WEB_SERVICE} (L7)`,
      clusters: { exporters: [a, b], callers: [a, c] },
      steadyState,
      legs,
      revocation,
      security,
      totals: {
        requests: all.length,
        failedNewConnections: all.filter((s) => s.failure === "new-connection").length,
        failedInFlight: all.filter((s) => s.failure === "in-flight").length,
        failedRequests: all.filter((s) => s.failure === "request").length,
      },
    };
  } finally {
    await stopLoads();
    agent.destroy();
    for (const s of sessions) s.close();
  }
}

function settled(load: SteadyLoad, from: number, expected: string): boolean {
  const recent = load.samples.filter((s) => s.at >= from).slice(-SETTLED_STREAK);
  return recent.length === SETTLED_STREAK && recent.every((s) => clusterOf(s.servedBy) === expected);
}

function lastServed(load: SteadyLoad): string | undefined {
  return load.samples.findLast((s) => s.servedBy)?.servedBy;
}

export function describeShift(s: Shift): string {
  const settledText = s.settledMs === undefined ? "did not settle" : `settled after ${s.settledMs} ms`;
  return `${s.requests} requests, ${s.failedNewConnections} failed new connections, ${s.failedInFlight} cut in flight, ${s.failedRequests} failed HTTP requests, first reply from the target after ${s.firstOnTargetMs ?? "-"} ms, ${settledText}; served by ${JSON.stringify(s.servedBy)}`;
}

/** Waits until no caller's ServiceImport lists the revoked cluster any more (reported, not judged, if it never happens). */
async function importsWithout(set: LocalClusterSet, revoked: string, callers: string[], progress: (line: string) => void): Promise<RevocationReport> {
  const read = async () => {
    const importsAfter: RevocationReport["importsAfter"] = {};
    for (const caller of callers) {
      importsAfter[caller] = {};
      for (const service of [DRILL_SERVICE, DRILL_WEB_SERVICE]) importsAfter[caller][service] = await set.importedFrom(caller, service);
    }
    return importsAfter;
  };
  const dropped = (imports: RevocationReport["importsAfter"]) => Object.values(imports).every((byService) => Object.values(byService).every((clusters) => !clusters.includes(revoked)));
  await waitFor(`${revoked} dropped from the ServiceImports of ${callers.join(" and ")}`, async () => (dropped(await read()) ? true : undefined), { timeoutMs: SETTLE_TIMEOUT_MS, intervalMs: 200 }).catch((err: unknown) =>
    progress(`  still imported: ${String(err)}`),
  );
  const importsAfter = await read();
  progress(`after revoking ${revoked}, the ServiceImports list: ${JSON.stringify(importsAfter)}`);
  return { revoked, importsAfter };
}

/** Who the exporter's export listener lets in: a ClusterSet member, not another trust domain, not a revoked cluster. */
async function securityChecks(set: LocalClusterSet, who: { exporter: string; member: string; revoked: string }): Promise<SecurityCheck[]> {
  const { exporter, member } = who;
  const sni = xdsNames.exportSni({ namespace: DRILL_NAMESPACE, name: DRILL_SERVICE }, DRILL_SERVICE_PORT);
  const port = set.exportPort(exporter);
  const ca = set.trustRoot.certificate.pem;
  const memberDir = join(set.dir, member);
  const identityOf = (dir: string) => ({ cert: readFileSync(join(dir, "gateway.pem"), "utf8"), key: readFileSync(join(dir, "gateway.key"), "utf8") });
  const memberIdentity = identityOf(memberDir);
  const foreignRoot = await RootCa.create({ trustDomain: "other.example" });
  const foreignLeaf = await (await foreignRoot.issueIntermediate({ cluster: member })).issueLeaf({});
  const foreignIdentity = { cert: foreignLeaf.chainPem, key: foreignLeaf.privateKeyPem ?? "" };
  const checks: { name: string; expected: SecurityCheck["expected"]; identity: { cert: string; key: string } }[] = [
    { name: `${member}'s gateway certificate (trust domain ${DRILL_TRUST_DOMAIN})`, expected: "served", identity: memberIdentity },
    { name: `a certificate of another trust domain (other.example, cluster ${member})`, expected: "refused", identity: foreignIdentity },
    { name: `${who.revoked}'s gateway certificate (cluster revoked)`, expected: "refused", identity: identityOf(join(set.dir, who.revoked)) },
  ];
  const results: SecurityCheck[] = [];
  for (const check of checks) {
    const { outcome, detail } = await mtlsCall({ host: set.host, port, sni, ca, ...check.identity });
    results.push({ name: check.name, expected: check.expected, outcome, detail });
  }
  return results;
}

function mtlsCall(options: { host: string; port: number; sni: string; ca: string; cert: string; key: string }): Promise<{ outcome: SecurityCheck["outcome"]; detail: string }> {
  return new Promise((resolve) => {
    let data = "";
    const socket = tlsConnect({ host: options.host, port: options.port, servername: options.sni, ca: options.ca, cert: options.cert, key: options.key, checkServerIdentity: () => undefined });
    const timer = setTimeout(() => socket.destroy(new Error("no reply within 10 s")), 10_000);
    socket.on("secureConnect", () => socket.write("ping"));
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString();
      if (data.includes("\n")) {
        clearTimeout(timer);
        socket.end();
        resolve({ outcome: "served", detail: `served by ${data.split("\n")[0]}` });
      }
    });
    socket.on("error", (err: Error) => {
      clearTimeout(timer);
      resolve({ outcome: "refused", detail: err.message });
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ outcome: "refused", detail: data ? `closed after ${JSON.stringify(data)}` : "closed without a reply" });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
