import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { connect as netConnect, createServer } from "node:net";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { ManagedProcess, binaryPath, freePort, isAlive as alive, scratchDir, startCluster, startNats, waitFor } from "../env/index.ts";

const teardown = suite("test/env: no server outlives its runner");
const runners: ChildProcess[] = [];
teardown.after(() => {
  for (const runner of runners) runner.kill("SIGKILL");
});

/** Runs the hold-nats fixture in a child runner and resolves with the runner and its nats-server pid. */
async function runnerHoldingNats() {
  const runner = spawn(process.execPath, ["--import", "tsx", "test/support/hold-nats.ts"], { stdio: ["ignore", "pipe", "inherit"] });
  runners.push(runner);
  const lines = createInterface({ input: runner.stdout });
  const natsPid = await new Promise<number>((resolve, reject) => {
    lines.once("line", (line) => {
      const { pid } = JSON.parse(line) as { pid?: number };
      if (pid) resolve(pid);
      else reject(new Error(`fixture printed no pid: ${line}`));
    });
    runner.once("exit", (code) => reject(new Error(`fixture exited ${code}`)));
  });
  return { runner, natsPid };
}


teardown("an interrupted runner kills its servers on the way out", async () => {
  const { runner, natsPid } = await runnerHoldingNats();
  assert.ok(alive(natsPid), "the fixture's nats-server runs");
  runner.kill("SIGINT");
  await waitFor("nats-server to die with its runner", async () => (alive(natsPid) ? undefined : true), { timeoutMs: 5_000 });
});

teardown("servers of a runner killed by SIGKILL are reaped by the next runner", async () => {
  const { runner, natsPid } = await runnerHoldingNats();
  runner.kill("SIGKILL");
  await new Promise((r) => runner.once("exit", r));
  assert.ok(alive(natsPid), "SIGKILL gives the runner no chance to clean up");
  // Any start in a fresh runner reaps orphans first; start a short-lived process to trigger it.
  const next = spawn(process.execPath, ["--import", "tsx", "-e", `
    import("./test/env/index.ts").then(async ({ ManagedProcess }) => {
      const p = ManagedProcess.start({ name: "true", command: "/bin/true", args: [], logFile: "/dev/null" });
      await p.exited;
    });`], { stdio: "inherit" });
  await new Promise((r) => next.once("exit", r));
  await waitFor("the orphaned nats-server to be reaped", async () => (alive(natsPid) ? undefined : true), { timeoutMs: 5_000 });
});

teardown("a stopped process releases its port", async () => {
  const dir = scratchDir("teardown");
  const port = await freePort();
  const nats = ManagedProcess.start({ name: "nats", command: await binaryPath("nats-server"), args: ["-a", "127.0.0.1", "-p", String(port)], logFile: `${dir}/nats.log` });
  await waitFor("nats-server to listen", () => canConnect(port).then((ok) => (ok ? true : undefined)), { timeoutMs: 10_000, process: nats });
  await nats.stop();
  assert.not.ok(nats.running);
  assert.not.ok(await canConnect(port), "nothing listens on the port any more");
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", resolve));
  await new Promise((resolve) => server.close(resolve));
});

teardown("a stopped NATS server or kube control plane leaves no scratch directory behind", async () => {
  const nats = await startNats();
  assert.ok(existsSync(nats.dir), "the NATS store exists while it runs");
  await nats.stop();
  assert.not.ok(existsSync(nats.dir), `${nats.dir} removed`);
  const cluster = await startCluster("teardown", { installCrds: false });
  const dir = dirname(cluster.kubeconfigPath);
  assert.ok(existsSync(dir), "etcd's data exists while the control plane runs");
  await cluster.stop();
  assert.not.ok(existsSync(dir), `${dir} removed`);
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

teardown.run();
