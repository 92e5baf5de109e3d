import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { asError } from "../../common/index.ts";
import { cacheDir } from "./paths.ts";

export interface ProcessSpec {
  /** Short label used in errors, e.g. `etcd[cluster-a]`. */
  name: string;
  command: string;
  args: readonly string[];
  /** stdout and stderr are appended here, so a failing test can show the tail. */
  logFile: string;
  env?: Record<string, string>;
}

/**
 * A server process owned by a test. Every live one is killed when the runner
 * exits, is interrupted, or crashes; one left behind by a runner that was
 * SIGKILLed is reaped by the next runner (see `reapOrphans`).
 */
export class ManagedProcess {
  readonly spec: ProcessSpec;
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;
  private exitCode: number | null | undefined;

  private constructor(spec: ProcessSpec, child: ChildProcess) {
    this.spec = spec;
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitCode = code ?? (signal ? null : 0);
        live.delete(this);
        writeRunFile();
        resolve(this.exitCode);
      });
    });
  }

  static start(spec: ProcessSpec): ManagedProcess {
    installExitHooks();
    const log = openSync(spec.logFile, "a");
    try {
      const child = spawn(spec.command, [...spec.args], {
        stdio: ["ignore", log, log],
        env: { ...process.env, ...spec.env },
      });
      const managed = new ManagedProcess(spec, child);
      if (child.pid === undefined) throw new Error(`${spec.name}: could not start ${spec.command}`);
      live.add(managed);
      writeRunFile();
      return managed;
    } finally {
      closeSync(log);
    }
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Abrupt death, for fault-injection tests. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }

  logTail(lines = 30): string {
    return readFileSync(this.spec.logFile, "utf8").split("\n").slice(-lines).join("\n");
  }
}

const live = new Set<ManagedProcess>();
let hooksInstalled = false;

function runDir(): string {
  return join(cacheDir(), "run");
}

/** Records our children so a later runner can reap them if we die by SIGKILL. */
function writeRunFile(): void {
  const file = join(runDir(), `${process.pid}.json`);
  if (live.size === 0) {
    rmSync(file, { force: true });
    return;
  }
  const entries = [...live].map((p) => ({ pid: p.pid, command: p.spec.command }));
  writeFileSync(file, JSON.stringify(entries));
}

function killAllNow(): void {
  for (const p of live) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
  live.clear();
  writeRunFile();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  mkdirSync(runDir(), { recursive: true });
  reapOrphans();
  process.once("exit", killAllNow);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      killAllNow();
      process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
    });
  }
}

export function isAlive(pid: number): boolean {
  if (!Number.isFinite(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Kills children recorded by runners that no longer exist, checking each pid still runs the same binary. */
export function reapOrphans(): void {
  for (const name of readdirSync(runDir())) {
    const owner = Number.parseInt(name, 10);
    if (!Number.isFinite(owner) || owner === process.pid || isAlive(owner)) continue;
    const file = join(runDir(), name);
    const entries = JSON.parse(readFileSync(file, "utf8")) as { pid: number; command: string }[];
    for (const { pid, command } of entries) {
      if (exePath(pid) === command) process.kill(pid, "SIGKILL");
    }
    rmSync(file, { force: true });
  }
}

function exePath(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** Fail at once, with its log, if this process dies while we wait. */
  process?: ManagedProcess;
}

/** Polls `probe` until it returns a value other than undefined. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    if (options.process && !options.process.running) {
      throw new Error(`${options.process.spec.name} exited while waiting for ${what}:\n${options.process.logTail()}`);
    }
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const tail = options.process ? `\n--- ${options.process.spec.name} log ---\n${options.process.logTail()}` : "";
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${asError(lastError).message})` : ""}${tail}`);
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 50));
  }
}
