import { fork, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { CONTROLLER_V8_FLAGS } from "../../cli/v8-flags.ts";
import { ChildMessage, type ControllerChildConfig, type ParentMessage, type Usage } from "./controller-protocol.ts";

/**
 * How the child runs the controller: "compiled" from `npm run build`'s `dist/`, as a production
 * container would (plain node, no loader), or "tsx" straight from the TypeScript sources.
 */
export type ChildRuntime = "compiled" | "tsx";

const ENTRY: Record<ChildRuntime, URL> = {
  compiled: new URL("../../dist/bench/support/controller-process.js", import.meta.url),
  tsx: new URL("./controller-process.ts", import.meta.url),
};
const STOP_TIMEOUT_MS = 30_000;

/** The parent's handle on one controller child process: one request at a time over IPC. */
export class ControllerChild {
  readonly cluster: string;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private pending: ((message: ChildMessage) => void) | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(cluster: string, runtime: ChildRuntime, cpuProfileDir: string | undefined) {
    this.cluster = cluster;
    if (!existsSync(ENTRY[runtime])) throw new Error(`${fileURLToPath(ENTRY[runtime])} is missing: run \`npm run build\` first`);
    const execArgv = [
      ...(runtime === "tsx" ? ["--import", "tsx"] : []),
      "--expose-gc",
      ...CONTROLLER_V8_FLAGS,
      ...(cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${cpuProfileDir}`, `--cpu-prof-name=controller-${cluster}.cpuprofile`] : []),
    ];
    this.child = fork(ENTRY[runtime], [], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child.on("message", (raw: unknown) => {
      const reply = this.pending;
      this.pending = undefined;
      reply?.(ChildMessage.parse(raw));
    });
    this.exited = new Promise((resolve) => this.child.once("exit", () => resolve()));
    void this.exited.then(() => this.pending?.({ type: "failed", message: `controller child for ${cluster} exited` }));
  }

  static async start(options: { config: ControllerChildConfig; runtime: ChildRuntime; cpuProfileDir?: string }): Promise<ControllerChild> {
    const child = new ControllerChild(options.config.cluster, options.runtime, options.cpuProfileDir);
    try {
      await child.request({ type: "start", config: options.config });
      return child;
    } catch (err) {
      child.child.kill("SIGKILL");
      throw err;
    }
  }

  async usage(options: { gc: boolean }): Promise<Usage> {
    const reply = await this.request({ type: "usage", gc: options.gc });
    if (reply.type !== "usage") throw new Error(`expected usage from ${this.cluster}, got ${reply.type}`);
    return reply.usage;
  }

  /** Stops the controller, lets the child exit on its own (writing its CPU profile), and kills it if it hangs. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.connected) {
      const timer = setTimeout(() => this.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await this.request({ type: "stop" }).catch((err: unknown) => process.stderr.write(`stopping ${this.cluster}: ${String(err)}\n`));
      await this.exited;
      clearTimeout(timer);
    }
  }

  private request(message: ParentMessage): Promise<ChildMessage> {
    const run = async () => {
      const reply = await new Promise<ChildMessage>((resolve) => {
        this.pending = resolve;
        this.child.send(message);
      });
      if (reply.type === "failed") throw new Error(`controller child ${this.cluster}: ${reply.message}`);
      return reply;
    };
    const result = this.chain.then(run, run);
    this.chain = result.catch(() => undefined);
    return result;
  }
}
