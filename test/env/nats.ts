import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath } from "./binaries.ts";
import { ManagedProcess, waitFor } from "./managed-process.ts";
import { freePorts } from "./ports.ts";
import { removeScratchDir, scratchDir } from "./paths.ts";

export interface StartNatsOptions {
  nodes?: 1 | 3;
  /**
   * Extra server configuration appended to every node's file, e.g. the
   * `operator`, `system_account` and `resolver` blocks of JWT auth.
   */
  serverConfig?: string;
  /** How long to wait for the servers to report healthy. */
  readyTimeoutMs?: number;
}

export interface NatsNode {
  readonly name: string;
  readonly url: string;
  readonly monitorUrl: string;
  readonly running: boolean;
  /** The server's process id while it runs, for fault injection and leak checks. */
  readonly pid: number | undefined;
}

export interface NatsEnv {
  /** Client URLs of every node; clients given all of them fail over between nodes. */
  readonly urls: string[];
  readonly nodes: readonly NatsNode[];
  /** The nodes' stores, configs and logs; `stop()` removes it. */
  readonly dir: string;
  /** SIGKILLs node `index`, keeping its store for a restart. */
  kill(index: number): Promise<void>;
  /** Starts node `index` again with its old ports and store, and waits until it is healthy. */
  restart(index: number): Promise<void>;
  /** Stops every node, keeping stores: a whole-bus outage. */
  stopAll(): Promise<void>;
  /** Starts every stopped node again. */
  startAll(): Promise<void>;
  stop(): Promise<void>;
}

const CLUSTER_NAME = "fedgate-test";

class NatsNodeProcess implements NatsNode {
  readonly name: string;
  readonly url: string;
  readonly monitorUrl: string;
  private readonly configFile: string;
  private readonly logFile: string;
  private readonly binary: string;
  private process: ManagedProcess | undefined;

  constructor(options: { name: string; binary: string; dir: string; port: number; monitorPort: number; config: string }) {
    this.name = options.name;
    this.binary = options.binary;
    this.url = `nats://127.0.0.1:${options.port}`;
    this.monitorUrl = `http://127.0.0.1:${options.monitorPort}`;
    this.configFile = join(options.dir, "nats.conf");
    this.logFile = join(options.dir, "nats.log");
    writeFileSync(this.configFile, options.config);
  }

  get running(): boolean {
    return this.process?.running ?? false;
  }

  get pid(): number | undefined {
    return this.running ? this.process?.pid : undefined;
  }

  start(): void {
    this.process = ManagedProcess.start({ name: `nats[${this.name}]`, command: this.binary, args: ["-c", this.configFile], logFile: this.logFile });
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await waitFor(
      `${this.name} healthy`,
      async () => ((await fetch(`${this.monitorUrl}/healthz`)).ok ? true : undefined),
      { timeoutMs, process: this.process, intervalMs: 100 },
    );
  }

  async kill(): Promise<void> {
    await this.process?.kill();
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }
}

/** Starts a real nats-server (one node, or a routed 3-node cluster) with JetStream on free loopback ports. */
export async function startNats(options: StartNatsOptions = {}): Promise<NatsEnv> {
  const count = options.nodes ?? 1;
  const readyTimeoutMs = options.readyTimeoutMs ?? 30_000;
  const binary = await binaryPath("nats-server");
  const root = scratchDir("nats");
  const ports = await freePorts(count * 3);
  const clusterPorts = ports.slice(count * 2);

  const nodes = Array.from({ length: count }, (_, i) => {
    const name = `n${i + 1}`;
    const dir = join(root, name);
    mkdirSync(join(dir, "jetstream"), { recursive: true });
    const port = ports[i * 2] as number;
    const monitorPort = ports[i * 2 + 1] as number;
    const routes = clusterPorts.filter((_, j) => j !== i).map((p) => `"nats-route://127.0.0.1:${p}"`);
    const config = [
      `server_name: ${name}`,
      `listen: "127.0.0.1:${port}"`,
      `http: "127.0.0.1:${monitorPort}"`,
      `jetstream { store_dir: "${join(dir, "jetstream")}", max_memory_store: 256MB, max_file_store: 2GB }`,
      count > 1 ? `cluster { name: ${CLUSTER_NAME}, listen: "127.0.0.1:${clusterPorts[i]}", routes: [${routes.join(", ")}] }` : "",
      options.serverConfig ?? "",
    ].join("\n");
    return new NatsNodeProcess({ name, binary, dir, port, monitorPort, config });
  });

  const startAndWait = async (subset: NatsNodeProcess[]) => {
    for (const node of subset) node.start();
    await Promise.all(subset.map((node) => node.waitHealthy(readyTimeoutMs)));
  };
  const nodeAt = (index: number) => {
    const node = nodes[index];
    if (!node) throw new RangeError(`no NATS node ${index}; there are ${nodes.length}`);
    return node;
  };

  try {
    await startAndWait(nodes);
  } catch (err) {
    await Promise.all(nodes.map((n) => n.kill()));
    throw err;
  }

  return {
    urls: nodes.map((n) => n.url),
    nodes,
    dir: root,
    kill: (index) => nodeAt(index).kill(),
    restart: (index) => startAndWait([nodeAt(index)]),
    stopAll: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
    startAll: () => startAndWait(nodes.filter((n) => !n.running)),
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
      removeScratchDir(root);
    },
  };
}
