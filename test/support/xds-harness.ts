import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { FederationSnapshotInput } from "../../gateway/index.ts";

export interface CallResult {
  ok: boolean;
  server?: string;
  peer?: string;
  code?: number;
  details?: string;
  t: number;
}

export interface XdsClientProcess {
  results: CallResult[];
  stderr: string[];
  /** Resolves once `predicate(results)` holds; rejects after `timeoutMs`. */
  waitFor(what: string, predicate: (results: CallResult[]) => boolean, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "xds-echo-client-child.ts");

/** A grpc-js-xds client in its own process (its bootstrap is read once per process). */
export function spawnXdsClient(options: { bootstrap: object; target: string; mode: "insecure" | "xds-creds" }): XdsClientProcess {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", CHILD, options.target, options.mode], {
    env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: JSON.stringify(options.bootstrap), GRPC_XDS_BOOTSTRAP: "" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const results: CallResult[] = [];
  const stderr: string[] = [];
  let buffer = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim()) results.push(JSON.parse(line) as CallResult);
    }
  });
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    results,
    stderr,
    async waitFor(what, predicate, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(results)) {
        if (Date.now() > deadline || child.exitCode !== null) {
          const tail = results.slice(-5);
          throw new Error(`timed out waiting for ${what}; last results ${JSON.stringify(tail)}; stderr ${stderr.join("").slice(-2000)}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (child.exitCode === null) {
        child.stdin?.end();
        const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}

/** The last `n` results all answered by `server`. */
export function lastAllFrom(results: readonly CallResult[], server: string, n: number): boolean {
  const tail = results.slice(-n);
  return tail.length === n && tail.every((r) => r.ok && r.server === server);
}

export interface EchoSnapshotOptions {
  adsPort?: number;
  localPort: number | undefined;
  remotePort: number;
  tls: FederationSnapshotInput["tls"];
  proxylessMtls?: boolean;
}

/** demo/echo, exported by cluster a (this one, backend on localPort) and by b (its gateway on remotePort). */
export function echoSnapshot(options: EchoSnapshotOptions): FederationSnapshotInput {
  const exp = (cluster: string, gatewayPort: number, zone: string) => ({
    cluster,
    namespace: "demo",
    name: "echo",
    ports: [{ name: "grpc", protocol: "TCP" as const, port: 50051, appProtocol: "grpc" }],
    type: "ClusterSetIP" as const,
    sessionAffinity: "None" as const,
    readyEndpoints: [{ zone, ready: 1 }],
    gateway: { host: "127.0.0.1", port: gatewayPort },
  });
  return {
    self: { cluster: "a", region: "r1", zone: "z1" },
    services: [{ key: "demo/echo", namespace: "demo", name: "echo", exports: [exp("a", 15443, "z1"), exp("b", options.remotePort, "z2")] }],
    clusters: [
      { name: "a", leaseLive: true, stale: false },
      {
        name: "b",
        registration: { region: "r2", zones: ["z2"], network: "n1", gatewayAddresses: [{ host: "127.0.0.1", port: options.remotePort }], identity: "spiffe://fedgate.test/cluster/b/gateway" },
        leaseLive: true,
        stale: false,
      },
    ],
    localEndpoints: new Map(options.localPort === undefined ? [] : [["demo/echo", [{ address: "127.0.0.1", port: options.localPort, zone: "z1", ready: true }]]]),
    policies: new Map([["demo/echo", { aliases: ["echo"] }]]),
    tls: options.tls,
    proxyless: { mtls: options.proxylessMtls ?? false },
  };
}

export function bootstrapFor(adsAddress: string, extra: Record<string, unknown> = {}): object {
  return {
    xds_servers: [{ server_uri: adsAddress, channel_creds: [{ type: "insecure" }], server_features: ["xds_v3"] }],
    node: { id: "proxyless-client-a", cluster: "a", locality: { region: "r1", zone: "z1" } },
    ...extra,
  };
}
