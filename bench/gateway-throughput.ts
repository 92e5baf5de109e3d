/**
 * Gateway throughput, side by side in one run, with wrk (HTTP/1.1 keep-alive
 * carried over the L4 path, as in REFERENCE §6):
 *   (a) direct to the backend;
 *   (b) one fedgate gateway hop (import listener -> local backend, plain);
 *   (c) fedgate gateway pair with mTLS (A's import listener -> B's export listener -> backend),
 *       client connections carried as streams in one fedgate-mux/1 tunnel; (c0) the same pair with
 *       `mux_tunnels: false` on A (one mTLS connection per client connection, the relay before tunnels);
 *   (d) HAProxy pair with the same mTLS path (Debian haproxy, one thread each);
 *   (e) runtime floor: a pair of bare Node relays (bench/support/bare-relay.ts, `net` + `pipe`, no
 *       fedgate code), plain TCP; (eo) the same reading each target into a reused buffer (`onread`);
 *       (f) the (e) pair with mTLS (`tls` + `pipe`, REFERENCE §6's naive pair). They run with `--node-flags` too.
 * Then the same four paths at L7 (HTTP/1.1 keep-alive, `Host` set to the
 * service): the fedgate gateways run HTTP import listeners (per-request
 * routing and balancing; the peer's export side stays an L4 relay), and
 * HAProxy's A side runs in `mode http`. L7 (c) carries A's pooled upstream
 * connections as streams of one fedgate-mux/1 tunnel; L7 (c0) is the same
 * pair with `mux_tunnels: false` (one mTLS connection per pooled connection).
 * Each gateway and HAProxy runs in its own process; the backend (Node http,
 * "ok" or a 1 MiB body) too. Ratios are against (d).
 * On 1 MiB bodies each proxy path is also charged the CPU seconds (user +
 * system, from /proc) its gateway or HAProxy processes used per GB relayed:
 * the cost per byte, which the machine's load moves less than MB/s does.
 *
 * wrk is closed-loop: at saturation each path runs at its own load, so its
 * p99 ratios compare different loads. After the wrk rows, the bench offers
 * the SAME fixed rates to every path, L4 then L7, with test/env/loadgen
 * (open-loop, latency from each request's scheduled send time, like wrk2):
 * by default 25 %, 50 % and 75 % of the HAProxy pair's wrk req/s in this run
 * (`--rate-fractions`), so the rates sit below (d)'s capacity and the
 * comparison is of latency at equal load. A path that cannot keep up shows
 * its achieved rate below the offered one and a latency that includes its
 * backlog. The fixed-rate rows run `--rate-rounds` interleaved rounds (default
 * `--rounds`), print every round, and judge by the median of the per-round
 * p99 ratios (bench/support/fixed-rate.ts).
 *
 * Needs `wrk` and `haproxy`: the bench checks for them and, when missing and
 * running as root on Debian, installs them with
 * `apt-get update && apt-get install -y haproxy wrk`; otherwise it exits with
 * that instruction.
 *
 * Before the rows it prints the cipher each TLS hop negotiates and the raw crypto limit of that
 * cipher on this machine (bench/support/crypto-floor.ts), in GB/s per core; each L4 path is also
 * charged its proxy processes' resident memory (VmRSS after the rounds, VmHWM peak).
 *
 * Run: node --import tsx bench/gateway-throughput.ts [--seconds 5] [--rounds 2] [--connections 32] [--rate-rounds <rounds>] [--rate-fractions 0.25,0.5,0.75] [--profile <dir>] [--gateway-logs <dir>] [--node-flags="..."] [--variant-flags="<flags>;<flags>"] [--l7-only] [--only <regex>] [--baseline <checkout>]
 * `--gateway-logs <dir>` writes each gateway's output to <dir>/<name>.log.
 * `--profile` writes a V8 CPU profile of each gateway process into <dir> (read it with Chrome DevTools).
 * `--baseline <checkout>` adds rows (cb) and L7 (cb): the (c) and L7 (c) pairs run from another checkout
 * of fedgate (its own node_modules, e.g. `git archive <commit>` plus a node_modules link), so old and new
 * code are measured in one run, round after round (A-B on a loaded machine).
 * `--variant-flags` adds, per `;`-separated set of V8/Node flags, a row (cv) with one more (c) pair whose
 * two gateways run with those flags instead of `--node-flags`, e.g. `--variant-flags="--max-semi-space-size=16;--max-semi-space-size=64"`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { connect as tlsConnect } from "node:tls";
import { GATEWAY_V8_FLAGS } from "../cli/v8-flags.ts";
import { XdsServer } from "../gateway/index.ts";
import { createClusterSetPki } from "../test/support/clusterset-pki.ts";
import type { FederationSnapshotInput } from "../gateway/index.ts";
import { EXPORT_SNI, gatewayLeaf, SERVICE, SERVICE_PORT, topologySnapshot } from "../test/support/gateway-harness.ts";
import type { BareRelayConfig } from "./support/bare-relay.ts";
import { cryptoFloor } from "./support/crypto-floor.ts";
import { printFixedRate, runFixedRate } from "./support/fixed-rate.ts";
import { cpuSeconds, residentMb } from "./support/process-cpu.ts";

const args = process.argv.slice(2);
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const SECONDS = flag("seconds", 5);
const ROUNDS = flag("rounds", 2);
const CONNECTIONS = flag("connections", 32);
const BIG_CONNECTIONS = 4;
/** `--only <regex>`: measure only the paths whose name matches, e.g. `--only "^\\((c0|c|d)\\)"` (the warm-up still touches every path). */
const ONLY = args.includes("--only") ? new RegExp(args[args.indexOf("--only") + 1] ?? "") : undefined;
const BIN = new URL("../bin/fedgate.js", import.meta.url).pathname;
/** Measures only the L7 rows (the L4 processes still start, since the L7 pair uses B's export listener). */
const L7_ONLY = args.includes("--l7-only");
const PROFILE_DIR = args.includes("--profile") ? args[args.indexOf("--profile") + 1] : undefined;
/** `--gateway-logs <dir>`: each gateway's stdout and stderr also go to <dir>/<name>.log (e.g. with `--node-flags=--trace-gc`). */
const LOG_DIR = args.includes("--gateway-logs") ? args[args.indexOf("--gateway-logs") + 1] : undefined;
/** What is kept of a child's output to look for its readiness line (a --trace-gc child writes a line per GC). */
const MAX_KEPT_OUTPUT_CHARS = 1 << 20;
const BASELINE_BIN = args.includes("--baseline") ? path.resolve(args[args.indexOf("--baseline") + 1] ?? ".", "bin/fedgate.js") : undefined;
const RATE_FRACTIONS = (args.includes("--rate-fractions") ? args[args.indexOf("--rate-fractions") + 1]! : "0.25,0.5,0.75").split(",").map(Number);
/** Interleaved rounds of the fixed-rate rows (each round runs every path once per rate); the verdict is the median. */
const RATE_ROUNDS = flag("rate-rounds", ROUNDS);
/** V8/Node flags for the gateway processes (and the bare relays), instead of the deployed GATEWAY_V8_FLAGS, e.g. `--node-flags="--single-threaded-gc --max-semi-space-size=32"`; `--node-flags=` for none. */
const NODE_FLAGS = args.find((a) => a.startsWith("--node-flags="))?.slice("--node-flags=".length).split(" ").filter(Boolean) ?? [...GATEWAY_V8_FLAGS];
const VARIANT_FLAGS = (args.find((a) => a.startsWith("--variant-flags="))?.slice("--variant-flags=".length).split(";") ?? []).map((v) => v.split(" ").filter(Boolean));
const BARE_RELAY = new URL("./support/bare-relay.ts", import.meta.url).pathname;

function ensureTools(): void {
  const missing = ["wrk", "haproxy"].filter((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status !== 0);
  if (!missing.length) return;
  if (process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v apt-get"]).status === 0) {
    console.error(`installing ${missing.join(", ")} with apt-get ...`);
    execFileSync("sh", ["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk"], { stdio: "inherit" });
    return;
  }
  console.error(`missing ${missing.join(", ")}: run \`apt-get update && apt-get install -y haproxy wrk\` first`);
  process.exit(2);
}

const children: ChildProcess[] = [];

/** Spawns a process and resolves with it once `ready(stdout+stderr)` holds. */
function start(cmd: string, argv: string[], ready: (out: string) => boolean, logFile?: string): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  const log = logFile ? createWriteStream(logFile) : undefined;
  return new Promise((resolve, reject) => {
    const check = (chunk: Buffer) => {
      log?.write(chunk);
      if (out.length > MAX_KEPT_OUTPUT_CHARS) return;
      out += chunk.toString();
      if (ready(out)) resolve({ child, out: () => out });
    };
    child.stdout?.on("data", check);
    child.stderr?.on("data", check);
    child.once("exit", (code) => reject(new Error(`${cmd} exited ${code}: ${out.slice(-2000)}`)));
  });
}

const BACKEND = `
const http = require("node:http");
const big = Buffer.alloc(1 << 20, 120);
const s = http.createServer((req, res) => {
  if (req.url === "/big") { res.writeHead(200, { "content-length": big.length }); res.end(big); }
  else { res.writeHead(200, { "content-length": 2 }); res.end("ok"); }
});
s.keepAliveTimeout = 60000;
s.listen(0, "127.0.0.1", () => console.log("PORT " + s.address().port));
`;

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startGateway(dir: string, name: string, xds: XdsServer, fedgate: Record<string, unknown> = {}, bin = BIN, nodeFlags = NODE_FLAGS): Promise<Record<string, { port: number }>> {
  const file = path.join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      node: { id: `bench-${name}`, cluster: name },
      xds_servers: [{ server_uri: xds.address }],
      admin: { address: "127.0.0.1", port: 0 },
      fedgate: { bind_address: "127.0.0.1", port_overrides: { "15443": 0, [String(SERVICE_PORT)]: 0 }, ...fedgate },
    }),
  );
  const profile = PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  const { out } = await start(process.execPath, [...nodeFlags, ...profile, bin, "gateway", "--bootstrap", file], (o) => o.includes('"gateway started"'), LOG_DIR && path.join(LOG_DIR, `${name}.log`));
  const admin = (JSON.parse(out().split("\n").find((l) => l.includes('"gateway started"')) ?? "{}") as { admin: string }).admin;
  for (;;) {
    const ready = await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false);
    if (ready) return (await (await fetch(`http://${admin}/listeners`)).json()) as Record<string, { port: number }>;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** CPU seconds used so far by every running spawned process (gateways, HAProxy, backend): on a loaded machine, CPU per request moves less than req/s. */
function childrenCpuSeconds(): number {
  return cpuSeconds(children.filter((c) => c.exitCode === null && c.pid).map((c) => c.pid!));
}

interface WrkResult {
  requests: number;
  /** CPU µs per request of every spawned process during the run (set by the caller). */
  cpuUsPerRequest?: number;
  rps: number;
  p50: number;
  p99: number;
  mbps: number;
  /** wrk's socket errors (connect, read, write, timeout: a request over 2 s) plus non-2xx responses. */
  errors: number[];
}

function unitMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v);
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}

/** The Host the L7 rows send: the service's ClusterSet name, which the HTTP import listener routes on. */
const L7_HOST = `${SERVICE.name}.${SERVICE.namespace}.svc.clusterset.local`;

/** The same topology with the service port named `http`: the control plane then gives gateways an HTTP import listener. */
function asHttp(snapshot: FederationSnapshotInput): FederationSnapshotInput {
  return { ...snapshot, services: snapshot.services.map((svc) => ({ ...svc, exports: svc.exports.map((e) => ({ ...e, ports: e.ports.map((p) => ({ ...p, name: "http" })) })) })) };
}

function wrk(port: number, pathName: string, connections: number, host?: string): WrkResult {
  const out = execFileSync("wrk", ["-t1", `-c${connections}`, `-d${SECONDS}s`, "--latency", ...(host ? ["-H", `Host: ${host}`] : []), `http://127.0.0.1:${port}${pathName}`], { encoding: "utf8" });
  const transfer = /Transfer\/sec:\s+([\d.]+)(KB|MB|GB|B)/.exec(out);
  const scale = { B: 1 / 1e6, KB: 1 / 1024, MB: 1, GB: 1024 } as const;
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  return {
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    p50: unitMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ""),
    p99: unitMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ""),
    mbps: transfer ? Number(transfer[1]) * scale[transfer[2] as keyof typeof scale] : NaN,
    errors: [...(errors ? errors.slice(1).map(Number) : [0, 0, 0, 0]), Number(non2xx?.[1] ?? 0)],
  };
}

/** The TLS version and cipher a Node client with `leaf` negotiates with the mTLS server on `port`. */
function negotiatedCipher(port: number, leaf: { chainPem: string; keyPem: string }, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: EXPORT_SNI, cert: leaf.chainPem, key: leaf.keyPem, ca, rejectUnauthorized: false }, () => {
      resolve(`${socket.getProtocol()} ${socket.getCipher().standardName}`);
      socket.destroy();
    });
    socket.once("error", reject);
  });
}

function lastChildPid(): number {
  return children.at(-1)!.pid!;
}

async function main(): Promise<void> {
  ensureTools();
  const dir = await mkdtemp(path.join(tmpdir(), "fedgate-bench-"));
  const pki = await createClusterSetPki(["a", "b"]);
  const backend = await start(process.execPath, ["-e", BACKEND], (o) => /PORT \d+/.test(o));
  const backendPort = Number(/PORT (\d+)/.exec(backend.out())![1]);
  const backendRef = { port: backendPort };

  // (b) one hop: gateway "one" in cluster a, backend local.
  const leafA = await gatewayLeaf(pki, "a");
  const leafB = await gatewayLeaf(pki, "b");
  const xdsOne = await XdsServer.start({});
  xdsOne.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [backendRef], leaf: leafA }));
  xdsOne.flush();
  const one = await startGateway(dir, "one", xdsOne);
  const onePid = lastChildPid();

  // (c) pair: B exports with the backend local; A imports with no local endpoints.
  const xdsB = await XdsServer.start({});
  xdsB.setSnapshot(topologySnapshot({ self: "b", pki, exporters: ["b"], exportPorts: new Map(), backends: [backendRef], leaf: leafB }));
  xdsB.flush();
  const b = await startGateway(dir, "b", xdsB);
  const bPid = lastChildPid();
  const bExport = b["fedgate-export-15443"]!.port;
  const xdsA = await XdsServer.start({});
  xdsA.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["b"], exportPorts: new Map([["b", bExport]]), backends: [], leaf: leafA }));
  xdsA.flush();
  const a = await startGateway(dir, "a", xdsA);
  const aPid = lastChildPid();
  // (c0): the same pair with A dialling one mTLS connection per client connection (no fedgate-mux tunnel).
  const aPlain = await startGateway(dir, "a-plain", xdsA, { mux_tunnels: false });
  const aPlainPid = lastChildPid();
  /** One more (c) pair with its own control planes, from `bin` with `nodeFlags`. */
  const xdsExtra: XdsServer[] = [];
  const startPair = async (tag: string, bin: string, nodeFlags: string[]): Promise<{ port: number; proxies: number[]; exportPort: number }> => {
    const [xBx, xAx] = [await XdsServer.start({}), await XdsServer.start({})];
    xdsExtra.push(xBx, xAx);
    xBx.setSnapshot(topologySnapshot({ self: "b", pki, exporters: ["b"], exportPorts: new Map(), backends: [backendRef], leaf: leafB }));
    xBx.flush();
    const bx = await startGateway(dir, `b-${tag}`, xBx, {}, bin, nodeFlags);
    const bxPid = lastChildPid();
    xAx.setSnapshot(topologySnapshot({ self: "a", pki, exporters: ["b"], exportPorts: new Map([["b", bx["fedgate-export-15443"]!.port]]), backends: [], leaf: leafA }));
    xAx.flush();
    const ax = await startGateway(dir, `a-${tag}`, xAx, {}, bin, nodeFlags);
    return { port: ax[`fedgate-import-${SERVICE_PORT}`]!.port, proxies: [lastChildPid(), bxPid], exportPort: bx["fedgate-export-15443"]!.port };
  };
  // (cb): the (c) pair from the --baseline checkout.
  const baseline = BASELINE_BIN ? await startPair("base", BASELINE_BIN, NODE_FLAGS) : undefined;
  // L7 (cb): the baseline's HTTP import listener in front of the baseline's B.
  let baselineL7Port: number | undefined;
  if (BASELINE_BIN && baseline) {
    const xAbL7 = await XdsServer.start({});
    xdsExtra.push(xAbL7);
    xAbL7.setSnapshot(asHttp(topologySnapshot({ self: "a", pki, exporters: ["b"], exportPorts: new Map([["b", baseline.exportPort]]), backends: [], leaf: leafA })));
    xAbL7.flush();
    baselineL7Port = (await startGateway(dir, "a-l7-base", xAbL7, {}, BASELINE_BIN))[`fedgate-import-${SERVICE_PORT}`]!.port;
  }
  // (cv): the (c) pair with other V8 flags.
  const variants: { name: string; port: number; proxies: number[] }[] = [];
  for (const [i, flags] of VARIANT_FLAGS.entries()) variants.push({ name: `(cv) fedgate pair, mTLS, ${flags.join(" ") || "no flags"}`, ...(await startPair(`v${i}`, BIN, flags)) });

  // L7: the same paths with HTTP import listeners (B's export side is the same L4 relay).
  const xdsOneL7 = await XdsServer.start({});
  xdsOneL7.setSnapshot(asHttp(topologySnapshot({ self: "a", pki, exporters: ["a"], exportPorts: new Map(), backends: [backendRef], leaf: leafA })));
  xdsOneL7.flush();
  const oneL7 = await startGateway(dir, "one-l7", xdsOneL7);
  const xdsAL7 = await XdsServer.start({});
  xdsAL7.setSnapshot(asHttp(topologySnapshot({ self: "a", pki, exporters: ["b"], exportPorts: new Map([["b", bExport]]), backends: [], leaf: leafA })));
  xdsAL7.flush();
  const aL7 = await startGateway(dir, "a-l7", xdsAL7);
  const aL7Plain = await startGateway(dir, "a-l7-plain", xdsAL7, { mux_tunnels: false });

  // (d) HAProxy pair, same identities and SNI, TLS 1.3 both ways, client certificate verified.
  const haA = await freePort();
  const haB = await freePort();
  const haAHttp = await freePort();
  await writeFile(path.join(dir, "a.pem"), leafA.chainPem + leafA.keyPem);
  await writeFile(path.join(dir, "b.pem"), leafB.chainPem + leafB.keyPem);
  await writeFile(path.join(dir, "ca.pem"), pki.bundle.caPems().join("\n"));
  const haConfig = `global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend import
  bind 127.0.0.1:${haA}
  default_backend peer
backend peer
  server b 127.0.0.1:${haB} ssl crt ${dir}/a.pem ca-file ${dir}/ca.pem verify none sni str(${EXPORT_SNI})
frontend import_http
  mode http
  bind 127.0.0.1:${haAHttp}
  default_backend peer_http
backend peer_http
  mode http
  http-reuse always
  server b 127.0.0.1:${haB} ssl crt ${dir}/a.pem ca-file ${dir}/ca.pem verify none sni str(${EXPORT_SNI})
`;
  const haConfigB = `global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend export
  bind 127.0.0.1:${haB} ssl crt ${dir}/b.pem ca-file ${dir}/ca.pem verify required
  default_backend local
backend local
  server echo 127.0.0.1:${backendPort}
`;
  await writeFile(path.join(dir, "ha-a.cfg"), haConfig);
  await writeFile(path.join(dir, "ha-b.cfg"), haConfigB);
  for (const cfg of ["ha-a.cfg", "ha-b.cfg"]) {
    execFileSync("haproxy", ["-c", "-q", "-f", path.join(dir, cfg)]);
    const child = spawn("haproxy", ["-db", "-f", path.join(dir, cfg)], { stdio: ["ignore", "ignore", "inherit"] });
    children.push(child);
  }
  const haPids = children.slice(-2).map((c) => c.pid!);

  // (e), (f): the runtime floor, bare Node relay pairs (B relays to the backend, A to B).
  const bareRelay = async (config: BareRelayConfig) => {
    const relay = await start(process.execPath, [...NODE_FLAGS, "--import", "tsx", BARE_RELAY, JSON.stringify(config)], (o) => /PORT \d+/.test(o));
    return { port: Number(/PORT (\d+)/.exec(relay.out())![1]), pid: relay.child.pid! };
  };
  const bareB = await bareRelay({ target: { port: backendPort } });
  const bareA = await bareRelay({ target: { port: bareB.port } });
  const bareReuseB = await bareRelay({ target: { port: backendPort }, reuseReadBuffer: true });
  const bareReuseA = await bareRelay({ target: { port: bareReuseB.port }, reuseReadBuffer: true });
  const bareTlsB = await bareRelay({ listenTls: { pemFile: path.join(dir, "b.pem"), caFile: path.join(dir, "ca.pem") }, target: { port: backendPort } });
  const bareTlsA = await bareRelay({ target: { port: bareTlsB.port, tls: { pemFile: path.join(dir, "a.pem"), caFile: path.join(dir, "ca.pem"), servername: EXPORT_SNI } } });
  await new Promise((r) => setTimeout(r, 500));

  // The cipher each TLS hop negotiates with a Node client (fedgate's and (f)'s A side), and its raw limit here.
  const ciphers = new Set<string>();
  for (const [hop, port] of [["(c) B export", bExport], ["(d) HAProxy B", haB], ["(f) bare B", bareTlsB.port]] as const) {
    const cipher = await negotiatedCipher(port, leafA, pki.bundle.caPems().join("\n"));
    ciphers.add(cipher);
    console.log(`${hop}: ${cipher}`);
  }
  for (const cipher of ciphers) {
    const aead = /AES_128_GCM/.test(cipher) ? "aes-128-gcm" : /AES_256_GCM/.test(cipher) ? "aes-256-gcm" : undefined;
    if (!aead) continue;
    const floor = cryptoFloor(aead);
    console.log(`${aead} on 16 KiB records, one core: openssl speed ${floor.openssl.toFixed(2)} GB/s, Node cipher loop ${floor.node.toFixed(2)} GB/s`);
  }
  console.log(`gateway node flags: ${NODE_FLAGS.join(" ") || "(none)"}`);

  const listener = `fedgate-import-${SERVICE_PORT}`;
  /** `proxies`: the processes whose CPU time the 1 MiB-body runs charge per GB relayed. */
  const allPaths: { name: string; port: number; l7?: boolean; proxies?: number[] }[] = [
    { name: "(a) direct", port: backendPort },
    { name: "(b) fedgate, one hop", port: one[listener]!.port, proxies: [onePid] },
    { name: "(c0) fedgate pair, mTLS, no mux", port: aPlain[listener]!.port, proxies: [aPlainPid, bPid] },
    { name: "(c) fedgate pair, mTLS", port: a[listener]!.port, proxies: [aPid, bPid] },
    ...(baseline ? [{ name: "(cb) fedgate pair, mTLS, --baseline", ...baseline }] : []),
    ...variants,
    { name: "(d) HAProxy pair, mTLS", port: haA, proxies: haPids },
    { name: "(e) bare Node relay pair, plain", port: bareA.port, proxies: [bareA.pid, bareB.pid] },
    { name: "(eo) bare Node relay pair, plain, onread into a reused buffer", port: bareReuseA.port, proxies: [bareReuseA.pid, bareReuseB.pid] },
    { name: "(f) bare Node relay pair, mTLS", port: bareTlsA.port, proxies: [bareTlsA.pid, bareTlsB.pid] },
    { name: "L7 (a) direct", port: backendPort, l7: true },
    { name: "L7 (b) fedgate, one hop", port: oneL7[listener]!.port, l7: true },
    { name: "L7 (c0) fedgate pair, mTLS, no mux", port: aL7Plain[listener]!.port, l7: true },
    { name: "L7 (c) fedgate pair, mTLS", port: aL7[listener]!.port, l7: true },
    ...(baselineL7Port ? [{ name: "L7 (cb) fedgate pair, mTLS, --baseline", port: baselineL7Port, l7: true }] : []),
    { name: "L7 (d) HAProxy pair, mTLS, mode http", port: haAHttp, l7: true },
  ];
  const paths = allPaths.filter((p) => p.l7 || !L7_ONLY);
  // Warm-up (TLS sessions, JIT).
  for (const p of paths) wrk(p.port, "/", 8, L7_HOST);
  const measured = paths.filter((p) => !ONLY || ONLY.test(p.name) || p.name.includes("(d)"));
  const results = new Map<string, { small: WrkResult[]; big: WrkResult[]; cpuPerGb: number[] }>(measured.map((p) => [p.name, { small: [], big: [], cpuPerGb: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const p of measured) {
      const cpuBefore = childrenCpuSeconds();
      const small = wrk(p.port, "/", CONNECTIONS, L7_HOST);
      small.cpuUsPerRequest = ((childrenCpuSeconds() - cpuBefore) * 1e6) / small.requests;
      results.get(p.name)!.small.push(small);
      // Large bodies are measured on the L4 path only (issue 7).
      if (!p.l7) {
        const cpuBefore = cpuSeconds(p.proxies ?? []);
        const big = wrk(p.port, "/big", BIG_CONNECTIONS);
        results.get(p.name)!.big.push(big);
        if (p.proxies) results.get(p.name)!.cpuPerGb.push((cpuSeconds(p.proxies) - cpuBefore) / ((big.mbps * SECONDS) / 1024));
      }
    }
  }
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const summary = measured.map((p) => {
    const r = results.get(p.name)!;
    const rss = p.proxies && !p.l7 ? residentMb(p.proxies) : undefined;
    return {
      rss: rss ? `${rss.now.toFixed(0)} / ${rss.peak.toFixed(0)}` : "–",
      name: p.name,
      rps: mean(r.small.map((x) => x.rps)),
      p50: mean(r.small.map((x) => x.p50)),
      p99: mean(r.small.map((x) => x.p99)),
      mbps: mean(r.big.map((x) => x.mbps)),
      cpu: mean(r.small.map((x) => x.cpuUsPerRequest ?? NaN)),
      cpuPerGb: r.cpuPerGb.length ? mean(r.cpuPerGb) : NaN,
      errors: [0, 1, 2, 3, 4].map((i) => [...r.small, ...r.big].reduce((sum, x) => sum + (x.errors[i] ?? 0), 0)).join("/"),
    };
  });
  const ref = summary.find((s) => s.name.startsWith("(d)"));
  const refL7 = summary.find((s) => s.name.startsWith("L7 (d)"))!;
  console.log(`\nwrk -t1, ${CONNECTIONS} connections on "/" (2-byte body), ${BIG_CONNECTIONS} on "/big" (1 MiB), ${SECONDS} s each, mean of ${ROUNDS} rounds\n`);
  console.log("| path | req/s | × (d) | p50 ms | p99 ms | p99 × (d) | MB/s (1 MiB bodies) | × (d) | proxy CPU s per GB | × (d) | CPU µs/req | errors c/r/w/t/non-2xx | proxy RSS MB now / peak |");
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const s of summary) {
    const r = s.name.startsWith("L7") ? refL7 : ref!;
    const cpu = Number.isNaN(s.cpuPerGb) ? "| – | –" : `| ${s.cpuPerGb.toFixed(2)} | ${(s.cpuPerGb / r.cpuPerGb).toFixed(2)}`;
    const mb = s.name.startsWith("L7") ? "| – | – | – | –" : `| ${s.mbps.toFixed(0)} | ${(s.mbps / r.mbps).toFixed(2)} ${cpu}`;
    console.log(`| ${s.name} | ${Math.round(s.rps).toLocaleString("en")} | ${(s.rps / r.rps).toFixed(2)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${(s.p99 / r.p99).toFixed(2)} ${mb} | ${s.cpu.toFixed(0)} | ${s.errors} | ${s.rss} |`);
  }
  console.log(`\nL7 rows are against L7 (d). Load average: ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);

  for (const layer of L7_ONLY ? (["L7"] as const) : (["L4", "L7"] as const)) {
    const layerPaths = measured.filter((p) => (layer === "L7") === Boolean(p.l7));
    // A layer with nothing but its reference row (e.g. `--only '^\\(c'` keeps L7 (d)) has nothing to compare.
    if (layerPaths.every((p) => p.name.includes("(d)"))) continue;
    const haproxyRps = (layer === "L7" ? refL7 : ref!).rps;
    const rates = RATE_FRACTIONS.map((f) => Math.max(1, Math.round(haproxyRps * f)));
    const rows = await runFixedRate({ paths: layerPaths, rates, rounds: RATE_ROUNDS, durationMs: SECONDS * 1000, connections: CONNECTIONS, host: L7_HOST });
    printFixedRate({ layer, haproxyRps, fractions: RATE_FRACTIONS, seconds: SECONDS, connections: CONNECTIONS, rows });
  }
  console.log(`\nLoad average at the end: ${loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  await Promise.all([xdsOne, xdsA, xdsB, xdsOneL7, xdsAL7, ...xdsExtra].map((x) => x.close()));
  await rm(dir, { recursive: true, force: true });
}

try {
  await main();
} finally {
  const exits = children.filter((c) => c.exitCode === null).map((c) => new Promise((resolve) => c.once("exit", resolve)));
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await Promise.all(exits);
}
