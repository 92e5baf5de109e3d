import { createServer } from "node:net";
import { networkInterfaces } from "node:os";

/** Asks the kernel for a free loopback port. A caller that loses the race retries its start. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error("no port assigned"));
      });
    });
  });
}

export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/**
 * This host's first non-loopback IPv4 address. The apiserver refuses loopback
 * addresses in EndpointSlices, so local workloads and gateways that Kubernetes
 * objects point at listen here instead.
 */
export function hostAddress(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = addresses?.find((a) => a.family === "IPv4" && !a.internal);
    if (found) return found.address;
  }
  throw new Error("this host has no non-loopback IPv4 address; EndpointSlices cannot point at loopback");
}
