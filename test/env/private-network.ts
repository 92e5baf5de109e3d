import { spawn } from "node:child_process";
import { networkInterfaces } from "node:os";
import { FedgateError } from "../../common/index.ts";

/**
 * Kubernetes refuses loopback addresses in EndpointSlices, yet tests and the
 * drill must talk only to loopback or to network namespaces they create. So
 * the local ClusterSet runs in a network namespace of its own (`unshare
 * --net`), where this private address is put on the namespace's loopback
 * device: a non-loopback address the apiserver accepts, on traffic that never
 * leaves the namespace.
 */
export const PRIVATE_HOST = "10.250.0.1";

export class PrivateNetworkError extends FedgateError {
  constructor(message: string) {
    super("FEDGATE_ENV_PRIVATE_NETWORK", message);
  }
}

/** Whether this process runs where PRIVATE_HOST is assigned (inside `runInPrivateNetwork`). */
export function inPrivateNetwork(): boolean {
  return Object.values(networkInterfaces()).some((addresses) => addresses?.some((a) => a.address === PRIVATE_HOST));
}

/** PRIVATE_HOST, or a typed error saying how to get there. */
export function privateHost(): string {
  if (!inPrivateNetwork()) {
    throw new PrivateNetworkError(
      `${PRIVATE_HOST} is not assigned here: run inside a private network namespace (node --import tsx test/env/run-in-private-network.ts <command...>, or \`fedgate drill\`, which does it itself)`,
    );
  }
  return PRIVATE_HOST;
}

/**
 * Runs `command` in a new network namespace with loopback up and PRIVATE_HOST
 * on it; resolves its exit code. Creating the namespace needs root (or
 * CAP_SYS_ADMIN + CAP_NET_ADMIN); without it the error names what is missing.
 */
export function runInPrivateNetwork(command: readonly string[]): Promise<number> {
  const setup = `ip link set lo up && ip addr add ${PRIVATE_HOST}/32 dev lo && exec "$@"`;
  return new Promise((resolve, reject) => {
    const child = spawn("unshare", ["--net", "--", "sh", "-c", setup, "sh", ...command], { stdio: "inherit" });
    child.on("error", (err) => reject(new PrivateNetworkError(`cannot start unshare (util-linux) for a private network namespace: ${err.message}`)));
    child.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    // The namespace's processes get the caller's interrupt and terminate signals, so teardown still runs.
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => child.kill(sig));
  });
}
