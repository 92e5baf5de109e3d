/**
 * Real servers for integration tests and the local demo: nats-server, and one
 * etcd + kube-apiserver (+ optional kube-controller-manager) per simulated
 * cluster. Binaries are built from the Go module proxy once per machine.
 */
export { startNats, type NatsEnv, type NatsNode, type StartNatsOptions } from "./nats.ts";
export { startCluster, startClusters, type KubeCluster, type StartClusterOptions } from "./kube.ts";
export { binaryPath, PINNED, GoToolchainMissingError, BinaryBuildError, type Tool } from "./binaries.ts";
export { ManagedProcess, isAlive, waitFor, type ProcessSpec, type WaitOptions } from "./managed-process.ts";
export { freePort, freePorts } from "./ports.ts";
export { PRIVATE_HOST, PrivateNetworkError, inPrivateNetwork, privateHost, runInPrivateNetwork } from "./private-network.ts";
export { scratchDir } from "./paths.ts";
