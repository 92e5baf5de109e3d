import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import { binaryPath } from "./binaries.ts";
import { ManagedProcess, waitFor } from "./managed-process.ts";
import { freePorts } from "./ports.ts";
import { removeScratchDir, scratchDir } from "./paths.ts";

export interface StartClusterOptions {
  /** Also run kube-controller-manager (garbage collection, namespace deletion). */
  controllerManager?: boolean;
  /** Install the CRDs under manifests/crds (default true). */
  installCrds?: boolean;
  readyTimeoutMs?: number;
}

export interface KubeCluster {
  readonly name: string;
  readonly server: string;
  readonly kubeConfig: k8s.KubeConfig;
  /** A kubeconfig file for `kubectl --kubeconfig`. */
  readonly kubeconfigPath: string;
  /** Restarts kube-apiserver on the same port and etcd data, as after an upgrade or crash. */
  restartApiServer(): Promise<void>;
  stop(): Promise<void>;
}

const CRD_DIR = new URL("../../manifests/crds/", import.meta.url);
const DEFAULT_READY_TIMEOUT_MS = 90_000;

/** Starts one real control plane (etcd + kube-apiserver, optionally kube-controller-manager) on loopback. */
export async function startCluster(name: string, options: StartClusterOptions = {}): Promise<KubeCluster> {
  const timeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
  const [etcdBin, apiserverBin] = await Promise.all([binaryPath("etcd"), binaryPath("kube-apiserver")]);
  const kcmBin = options.controllerManager ? await binaryPath("kube-controller-manager") : undefined;
  const dir = scratchDir(`kube-${name}`);
  const [etcdPort, etcdPeerPort, apiPort, kcmPort] = (await freePorts(4)) as [number, number, number, number];
  const processes: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of processes.reverse()) await p.stop();
  };

  try {
    const etcd = startEtcd({ name, binary: etcdBin, dir, port: etcdPort, peerPort: etcdPeerPort });
    processes.push(etcd);
    await waitFor(`etcd[${name}] health`, async () => ((await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok ? true : undefined), {
      timeoutMs,
      process: etcd,
    });

    const token = randomBytes(24).toString("hex");
    const apiserverArgs = writeApiServerFiles({ dir, token, etcdPort, apiPort });
    const startApiServer = () =>
      ManagedProcess.start({ name: `kube-apiserver[${name}]`, command: apiserverBin, args: apiserverArgs, logFile: join(dir, "kube-apiserver.log") });
    let apiserver = startApiServer();
    processes.push(apiserver);
    const server = `https://127.0.0.1:${apiPort}`;
    const caFile = join(dir, "certs", "apiserver.crt");
    const waitReady = (p: ManagedProcess) =>
      waitFor(`kube-apiserver[${name}] /readyz`, async () => (existsSync(caFile) && (await httpsGet(server, "/readyz", token, readFileSync(caFile))).status === 200 ? true : undefined), {
        timeoutMs,
        process: p,
        intervalMs: 200,
      });
    await waitReady(apiserver);

    const kubeConfig = new k8s.KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name, server, caData: readFileSync(caFile).toString("base64") }],
      users: [{ name: "admin", token }],
      contexts: [{ name, cluster: name, user: "admin" }],
      currentContext: name,
    });
    const kubeconfigPath = join(dir, "kubeconfig");
    writeFileSync(kubeconfigPath, kubeConfig.exportConfig());

    if (options.installCrds ?? true) await installCrds(kubeConfig, { server, token, ca: readFileSync(caFile), timeoutMs });
    if (kcmBin) {
      const kcm = ManagedProcess.start({
        name: `kube-controller-manager[${name}]`,
        command: kcmBin,
        logFile: join(dir, "kube-controller-manager.log"),
        args: [
          `--kubeconfig=${kubeconfigPath}`,
          `--authentication-kubeconfig=${kubeconfigPath}`,
          `--authorization-kubeconfig=${kubeconfigPath}`,
          "--leader-elect=false",
          "--bind-address=127.0.0.1",
          `--secure-port=${kcmPort}`,
          `--cert-dir=${join(dir, "kcm-certs")}`,
          "--controllers=garbage-collector-controller,namespace-controller",
        ],
      });
      processes.push(kcm);
      await waitFor(`kube-controller-manager[${name}] /healthz`, async () => ((await httpsGet(`https://127.0.0.1:${kcmPort}`, "/healthz", token)).status === 200 ? true : undefined), {
        timeoutMs,
        process: kcm,
      });
    }

    return {
      name,
      server,
      kubeConfig,
      kubeconfigPath,
      restartApiServer: async () => {
        await apiserver.stop();
        const index = processes.indexOf(apiserver);
        apiserver = startApiServer();
        processes[index] = apiserver;
        await waitReady(apiserver);
      },
      stop: async () => {
        await stopAll();
        removeScratchDir(dir);
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Starts `count` independent control planes named cluster-a, cluster-b, … */
export async function startClusters(count: number, options: StartClusterOptions = {}): Promise<KubeCluster[]> {
  const names = Array.from({ length: count }, (_, i) => `cluster-${String.fromCharCode(97 + i)}`);
  const results = await Promise.allSettled(names.map((n) => startCluster(n, options)));
  const started = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    await Promise.all(started.map((c) => c.stop()));
    throw failed.reason;
  }
  return started;
}

function startEtcd(options: { name: string; binary: string; dir: string; port: number; peerPort: number }): ManagedProcess {
  const client = `http://127.0.0.1:${options.port}`;
  const peer = `http://127.0.0.1:${options.peerPort}`;
  return ManagedProcess.start({
    name: `etcd[${options.name}]`,
    command: options.binary,
    logFile: join(options.dir, "etcd.log"),
    args: [
      `--name=${options.name}`,
      `--data-dir=${join(options.dir, "etcd")}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${options.name}=${peer}`,
      // Test data is disposable; fsync dominates etcd latency on a shared disk.
      "--unsafe-no-fsync",
      "--log-level=warn",
    ],
  });
}

function writeApiServerFiles(options: { dir: string; token: string; etcdPort: number; apiPort: number }): string[] {
  const { dir } = options;
  const certDir = join(dir, "certs");
  mkdirSync(certDir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const saKey = join(dir, "sa.key");
  const saPub = join(dir, "sa.pub");
  writeFileSync(saKey, privateKey.export({ type: "pkcs8", format: "pem" }));
  writeFileSync(saPub, publicKey.export({ type: "spki", format: "pem" }));
  const tokenFile = join(dir, "tokens.csv");
  writeFileSync(tokenFile, `${options.token},admin,admin,system:masters\n`);
  return [
    `--etcd-servers=http://127.0.0.1:${options.etcdPort}`,
    `--secure-port=${options.apiPort}`,
    "--bind-address=127.0.0.1",
    "--advertise-address=127.0.0.1",
    `--cert-dir=${certDir}`,
    "--service-cluster-ip-range=10.96.0.0/16",
    "--authorization-mode=RBAC",
    `--token-auth-file=${tokenFile}`,
    "--service-account-issuer=https://kubernetes.default.svc",
    `--service-account-key-file=${saPub}`,
    `--service-account-signing-key-file=${saKey}`,
    "--disable-admission-plugins=ServiceAccount",
    "--allow-privileged=true",
    "--profiling=false",
    // Priority-and-fairness answers 429 for a while after /readyz passes; tests want a usable server at ready.
    "--enable-priority-and-fairness=false",
  ];
}

async function installCrds(kubeConfig: k8s.KubeConfig, access: { server: string; token: string; ca: Buffer; timeoutMs: number }): Promise<void> {
  const api = kubeConfig.makeApiClient(k8s.ApiextensionsV1Api);
  const crds = readdirSync(CRD_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => k8s.loadAllYaml(readFileSync(new URL(f, CRD_DIR), "utf8")) as k8s.V1CustomResourceDefinition[]);
  await Promise.all(crds.map((body) => api.createCustomResourceDefinition({ body })));
  // Established is not enough: clients fail until discovery lists the resource in every served version.
  await Promise.all(
    crds.flatMap((crd) =>
      crd.spec.versions
        .filter((v) => v.served)
        .map((v) =>
          waitFor(
            `${crd.spec.names.plural}.${crd.spec.group}/${v.name} in discovery`,
            async () => {
              const res = await httpsGet(access.server, `/apis/${crd.spec.group}/${v.name}`, access.token, access.ca);
              if (res.status !== 200) return undefined;
              const list = JSON.parse(res.body) as { resources?: { name: string }[] };
              if (!list.resources?.some((r) => r.name === crd.spec.names.plural)) return undefined;
              // A new resource's watch cache answers 429 "storage is (re)initializing" for a while after discovery lists it.
              const watch = await httpsGet(access.server, `/apis/${crd.spec.group}/${v.name}/${crd.spec.names.plural}?watch=true&timeoutSeconds=1`, access.token, access.ca);
              return watch.status === 200 ? true : undefined;
            },
            { timeoutMs: access.timeoutMs, intervalMs: 100 },
          ),
        ),
    ),
  );
}

/** A bare GET; `ca` undefined skips verification (only for the controller manager's self-signed health port). */
function httpsGet(server: string, path: string, token: string, ca?: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, server),
      { headers: { authorization: `Bearer ${token}` }, ...(ca ? { ca } : { rejectUnauthorized: false }), timeout: 5_000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}
