/** Builds (or finds cached) every server binary the tests use, so the first test does not pay for it. */
import { binaryPath, type Tool } from "./binaries.ts";

const tools: Tool[] = process.argv.length > 2 ? (process.argv.slice(2) as Tool[]) : ["nats-server", "etcd", "kube-apiserver", "kube-controller-manager"];
for (const tool of tools) {
  process.stderr.write(`[fedgate env] ${tool}: ${await binaryPath(tool)}\n`);
}
