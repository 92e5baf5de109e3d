import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FedgateError } from "../../common/index.ts";
import { isAlive } from "./managed-process.ts";
import { cacheDir } from "./paths.ts";

/** The pinned versions of every server the tests run. Changing one rebuilds it once. */
export const PINNED = Object.freeze({
  natsServer: "v2.12.15",
  etcd: "v3.6.16",
  kubernetes: "v1.35.4",
});

export type Tool = "nats-server" | "etcd" | "kube-apiserver" | "kube-controller-manager" | "xds-delta-client" | "loadgen";

/**
 * Go programs kept in this repository (test/env/<tool>/, with go.mod and
 * go.sum pinning their modules), built like the servers and cached by the
 * hash of their sources.
 */
const REPO_GO_TOOLS: ReadonlySet<Tool> = new Set(["xds-delta-client", "loadgen"]);

/** Only the Kubernetes binaries and etcd come from KUBEBUILDER_ASSETS, as in envtest. */
const ENVTEST_TOOLS: readonly Tool[] = ["etcd", "kube-apiserver", "kube-controller-manager"];

export class GoToolchainMissingError extends FedgateError {
  constructor(tool: Tool, cause: unknown) {
    super(
      "FEDGATE_ENV_NO_GO",
      `building ${tool} for the tests needs the Go toolchain (go >= 1.24) on PATH, and none was found. ` +
        `Install Go, or set KUBEBUILDER_ASSETS to a folder holding etcd and kube-apiserver.`,
      { cause },
    );
  }
}

export class BinaryBuildError extends FedgateError {
  constructor(tool: Tool, detail: string) {
    super("FEDGATE_ENV_BUILD_FAILED", `building ${tool} failed: ${detail}`);
  }
}

/** The path of a runnable binary, building and caching it on first use on this machine. */
export async function binaryPath(tool: Tool): Promise<string> {
  const assets = process.env["KUBEBUILDER_ASSETS"];
  if (assets && ENVTEST_TOOLS.includes(tool) && existsSync(join(assets, tool))) return join(assets, tool);
  const version = REPO_GO_TOOLS.has(tool) ? sourceHash(tool) : tool === "nats-server" ? PINNED.natsServer : tool === "etcd" ? PINNED.etcd : PINNED.kubernetes;
  const target = join(cacheDir(), "bin", `${tool}-${version}`, tool);
  if (existsSync(target)) return target;
  await withBuildLock(`${tool}-${version}`, async () => {
    if (!existsSync(target)) await build(tool, version, target);
  });
  return target;
}

async function build(tool: Tool, version: string, target: string): Promise<void> {
  const go = goVersion(tool);
  const started = Date.now();
  log(`building ${tool} ${version} with ${go} (once per machine; a cold Kubernetes build takes several minutes)`);
  const work = join(cacheDir(), "src", `${tool}-${version}`);
  mkdirSync(work, { recursive: true });
  const out = `${target}.partial`;
  mkdirSync(join(target, ".."), { recursive: true });
  if (REPO_GO_TOOLS.has(tool)) {
    for (const file of readdirSync(repoToolDir(tool))) copyFileSync(join(repoToolDir(tool), file), join(work, file));
    await runGo(tool, work, ["build", "-trimpath", "-o", out, "."]);
  } else if (tool === "nats-server" || tool === "etcd") {
    // etcd's server module carries local replaces; a wrapper module resolves its published siblings instead.
    const pkg = tool === "etcd" ? "go.etcd.io/etcd/server/v3" : "github.com/nats-io/nats-server/v2";
    wrapperModule(work, []);
    await runGo(tool, work, ["get", "-tool", `${pkg}@${version}`]);
    await runGo(tool, work, ["build", "-trimpath", "-o", out, pkg]);
  } else {
    await kubeWrapper(tool, work, version);
    await runGo(tool, work, ["build", "-trimpath", "-ldflags", kubeVersionFlags(version), "-o", out, `k8s.io/kubernetes/cmd/${tool}`]);
  }
  renameSync(out, target);
  log(`built ${tool} ${version} in ${Math.round((Date.now() - started) / 1000)} s -> ${target}`);
}

function repoToolDir(tool: Tool): string {
  return join(dirname(fileURLToPath(import.meta.url)), tool);
}

/** A change to a repository tool's sources (or its pinned modules) builds it anew. */
function sourceHash(tool: Tool): string {
  const hash = createHash("sha256");
  for (const file of readdirSync(repoToolDir(tool)).sort()) hash.update(file).update(readFileSync(join(repoToolDir(tool), file)));
  return hash.digest("hex").slice(0, 12);
}

function goVersion(tool: Tool): string {
  const result = spawnSync("go", ["version"], { encoding: "utf8" });
  if (result.error || result.status !== 0) throw new GoToolchainMissingError(tool, result.error ?? result.stderr);
  return result.stdout.trim().split(" ")[2] ?? "go";
}

/** A throwaway main module; its replaces are the only ones Go honours. */
function wrapperModule(dir: string, replaces: readonly string[], requires: readonly string[] = []): void {
  const lines = ["module fedgate.local/build-wrapper", "", "go 1.24", ""];
  if (requires.length) lines.push("require (", ...requires.map((r) => `\t${r}`), ")", "");
  if (replaces.length) lines.push("replace (", ...replaces.map((r) => `\t${r}`), ")", "");
  writeFileSync(join(dir, "go.mod"), lines.join("\n"));
}

/**
 * k8s.io/kubernetes replaces its ~31 staging modules with ./staging paths that
 * its module zip lacks; pin each to the matching published v0.Y.Z instead.
 */
async function kubeWrapper(tool: Tool, dir: string, version: string): Promise<void> {
  wrapperModule(dir, []);
  const info = await runGo(tool, dir, ["mod", "download", "-json", `k8s.io/kubernetes@${version}`]);
  const goMod = (JSON.parse(info) as { GoMod: string }).GoMod;
  const staging = [...readFileSync(goMod, "utf8").matchAll(/^\s+(k8s\.io\/[\w.-]+) => \.\/staging\//gm)].map((m) => m[1]);
  const stagingVersion = version.replace(/^v1\./, "v0.");
  wrapperModule(dir, staging.map((m) => `${m} => ${m} ${stagingVersion}`), [`k8s.io/kubernetes ${version}`]);
  await runGo(tool, dir, ["get", `k8s.io/kubernetes/cmd/${tool}@${version}`]);
}

function kubeVersionFlags(version: string): string {
  const [major, minor] = version.replace(/^v/, "").split(".");
  const vars = { gitVersion: version, gitMajor: major, gitMinor: minor, gitTreeState: "clean" };
  return Object.entries(vars)
    .flatMap(([k, v]) => [`-X k8s.io/component-base/version.${k}=${v}`, `-X k8s.io/client-go/pkg/version.${k}=${v}`])
    .join(" ");
}

/** Runs go, printing a heartbeat with the number of packages done so a cold build shows progress. */
function runGo(tool: Tool, cwd: string, args: string[]): Promise<string> {
  const isBuild = args[0] === "build";
  const finalArgs = isBuild ? ["build", "-v", ...args.slice(1)] : args;
  return new Promise((resolve, reject) => {
    const child = spawn("go", finalArgs, { cwd, env: { ...process.env, CGO_ENABLED: "0", GOFLAGS: "-mod=mod" } });
    let stdout = "";
    let stderrTail = "";
    let packages = 0;
    const started = Date.now();
    const heartbeat = setInterval(() => {
      log(`  ${tool}: go ${args[0]} running for ${Math.round((Date.now() - started) / 1000)} s${isBuild ? `, ${packages} packages compiled` : ""}`);
    }, 30_000);
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => {
      const text = chunk.toString();
      packages += text.split("\n").filter((l) => l && !l.startsWith("go:")).length;
      stderrTail = (stderrTail + text).slice(-4_000);
    });
    child.once("error", (err) => {
      clearInterval(heartbeat);
      reject(new GoToolchainMissingError(tool, err));
    });
    child.once("exit", (code) => {
      clearInterval(heartbeat);
      if (code === 0) resolve(stdout);
      else reject(new BinaryBuildError(tool, `go ${args.join(" ")} exited ${code}:\n${stderrTail}`));
    });
  });
}

/** Serialises builds across processes: two test files may need the same binary at once. */
async function withBuildLock(name: string, body: () => Promise<void>): Promise<void> {
  const dir = join(cacheDir(), "locks");
  mkdirSync(dir, { recursive: true });
  const lock = join(dir, `${name}.lock`);
  for (;;) {
    try {
      const fd = openSync(lock, "wx");
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(lock, "utf8"), 10);
      if (!isAlive(holder)) rmSync(lock, { force: true });
      else await new Promise((r) => setTimeout(r, 1_000));
    }
  }
  try {
    await body();
  } finally {
    rmSync(lock, { force: true });
  }
}

function log(line: string): void {
  process.stderr.write(`[fedgate env] ${line}\n`);
}
