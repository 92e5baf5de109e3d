import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { z } from "zod";
import { asError, ValidationError, type Problem } from "../../common/index.ts";
import { TrustBundle } from "../../trust/index.ts";
import { createRecordSigner, type RecordSigner } from "../exchange/record-signing.ts";

/**
 * `fedgate controller --config <file>`: one JSON file (a ConfigMap in a real
 * cluster) naming everything one cluster's controller needs. Paths point at
 * mounted Secrets. Parsed once, every problem collected (schema, unreadable
 * files, PEMs that do not parse), into a frozen object.
 *
 * ```json
 * { "cluster": "cluster-a", "clusterSet": "prod",
 *   "locality": { "region": "eu-1", "zone": "eu-1a", "network": "net-1" },
 *   "nats": { "servers": ["nats://nats:4222"], "credsFile": "/etc/fedgate/bus/cluster.creds" },
 *   "trust": { "trustDomain": "fedgate.example", "bundleFile": "…", "controllerCertFile": "…", "controllerKeyFile": "…",
 *              "gatewayCertFile": "…", "gatewayKeyFile": "…" },
 *   "xds": { "host": "0.0.0.0", "port": 18000 },
 *   "gateway": { "exportAddress": { "host": "gw.eu-1.example", "port": 15443 }, "importAddress": "10.0.0.10" },
 *   "leaderElection": { "namespace": "fedgate-system", "leaseName": "fedgate-controller" } }
 * ```
 */

/** Where a replica's leader-election identity comes from when the file names none (the Downward API sets it). */
export const POD_NAME_ENV = "POD_NAME";

const dnsLabel = z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be an RFC-1123 DNS label").max(63);
const port = z.number().int().min(1).max(65_535);
const file = z.string().min(1).max(4_096);
const ms = z.number().int().min(1).max(3_600_000);

export const controllerConfigSchema = z.strictObject({
  cluster: dnsLabel,
  clusterSet: dnsLabel,
  /** A kubeconfig file; absent: the in-cluster service account. */
  kubeconfig: file.optional(),
  locality: z.strictObject({ region: z.string().max(63).default(""), zone: z.string().max(63).default(""), network: z.string().max(63).default("") }).prefault({}),
  nats: z.strictObject({
    servers: z.array(z.string().regex(/^(nats|tls):\/\/[^\s]+$/, "must be a nats:// or tls:// URL")).min(1).max(16),
    /** The cluster's user credentials (`nsc`-style creds file, as `mintClusterCredentials` makes). */
    credsFile: file,
  }),
  trust: z.strictObject({
    trustDomain: z.string().min(1).max(253),
    /** The trust bundle installed at join: PEM roots. */
    bundleFile: file,
    /** Signs this cluster's bus records. */
    controllerCertFile: file,
    controllerKeyFile: file,
    /** Handed to the gateway over SDS. */
    gatewayCertFile: file,
    gatewayKeyFile: file,
  }),
  xds: z.strictObject({ host: z.string().min(1).default("0.0.0.0"), port, introspectionPort: port.optional() }),
  gateway: z.strictObject({
    /** Where peers reach this cluster's export listener. */
    exportAddress: z.strictObject({ host: z.string().min(1).max(253), port }),
    /** Where this cluster's workloads reach the gateway's import listeners (what derived EndpointSlices point at). */
    importAddress: z.ipv4(),
    importPorts: z
      .strictObject({ first: port, last: port })
      .refine((r) => r.first <= r.last, "first must not be above last")
      .default({ first: 20_000, last: 29_999 }),
  }),
  leaderElection: z
    .strictObject({
      namespace: dnsLabel,
      leaseName: z.string().min(1).max(253),
      /** Absent: `$POD_NAME`, else the host name. */
      identity: z.string().min(1).max(253).optional(),
      leaseDurationMs: ms.optional(),
      renewDeadlineMs: ms.optional(),
      retryPeriodMs: ms.optional(),
    })
    .optional(),
  createNamespaces: z.boolean().default(false),
  leaseTtlMs: z.number().int().min(1_000).max(3_600_000).optional(),
  log: z.strictObject({ level: z.enum(["debug", "info", "warn", "error"]).default("info"), format: z.enum(["json", "pretty"]).default("json") }).prefault({}),
});

export type ControllerConfigInput = z.input<typeof controllerConfigSchema>;
type ParsedConfig = z.output<typeof controllerConfigSchema>;

/** The parsed file plus the material its paths name, read and checked. */
export type ControllerConfig = Readonly<
  Omit<ParsedConfig, "leaderElection"> & {
    leaderElection: (NonNullable<ParsedConfig["leaderElection"]> & { identity: string }) | undefined;
    material: Readonly<{
      creds: string;
      bundle: TrustBundle;
      bundlePem: string;
      signer: RecordSigner;
      gatewayCertPem: string;
      gatewayKeyPem: string;
    }>;
  }
>;

export class ControllerConfigError extends ValidationError {
  constructor(subject: string, problems: readonly Problem[], options: { cause?: unknown } = {}) {
    super("FEDGATE_CONTROLLER_CONFIG_INVALID", subject, problems, options);
  }
}

/** Reads and checks `fedgate controller`'s config file; throws `ControllerConfigError` listing every problem. */
export async function loadControllerConfig(path: string): Promise<ControllerConfig> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (err) {
    throw new ControllerConfigError(`controller config ${path}`, [{ path: "", message: asError(err).message }], { cause: err });
  }
  return parseControllerConfig(json, `controller config ${path}`);
}

export async function parseControllerConfig(input: unknown, subject = "controller config"): Promise<ControllerConfig> {
  const result = controllerConfigSchema.safeParse(input);
  if (!result.success) throw new ControllerConfigError(subject, result.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })));
  const c = result.data;
  const problems: Problem[] = [];
  const read = async (at: string, name: string): Promise<string> => {
    try {
      return await readFile(name, "utf8");
    } catch (err) {
      problems.push({ path: at, message: asError(err).message });
      return "";
    }
  };
  const [creds, bundlePem, controllerCertPem, controllerKeyPem, gatewayCertPem, gatewayKeyPem] = await Promise.all([
    read("nats.credsFile", c.nats.credsFile),
    read("trust.bundleFile", c.trust.bundleFile),
    read("trust.controllerCertFile", c.trust.controllerCertFile),
    read("trust.controllerKeyFile", c.trust.controllerKeyFile),
    read("trust.gatewayCertFile", c.trust.gatewayCertFile),
    read("trust.gatewayKeyFile", c.trust.gatewayKeyFile),
  ]);
  if (creds && !creds.includes("BEGIN NATS USER JWT")) problems.push({ path: "nats.credsFile", message: "is not a NATS creds file" });
  if (gatewayCertPem && !gatewayCertPem.includes("-----BEGIN CERTIFICATE-----")) problems.push({ path: "trust.gatewayCertFile", message: "holds no PEM certificate" });
  if (gatewayKeyPem && !gatewayKeyPem.includes("PRIVATE KEY-----")) problems.push({ path: "trust.gatewayKeyFile", message: "holds no PEM private key" });
  const bundle = bundlePem ? attempt(problems, "trust.bundleFile", () => TrustBundle.fromPem(bundlePem, { trustDomain: c.trust.trustDomain, sequence: 1 })) : undefined;
  const signer =
    controllerCertPem && controllerKeyPem
      ? attempt(problems, "trust.controllerCertFile", () => createRecordSigner({ cluster: c.cluster, chainPem: controllerCertPem, keyPem: controllerKeyPem }))
      : undefined;
  if (problems.length || !bundle || !signer) throw new ControllerConfigError(subject, problems);
  const election = c.leaderElection;
  return Object.freeze({
    ...c,
    leaderElection: election ? { ...election, identity: election.identity ?? process.env[POD_NAME_ENV] ?? hostname() } : undefined,
    material: Object.freeze({ creds, bundle, bundlePem, signer, gatewayCertPem, gatewayKeyPem }),
  });
}

function attempt<T>(problems: Problem[], path: string, make: () => T): T | undefined {
  try {
    return make();
  } catch (err) {
    problems.push({ path, message: asError(err).message });
    return undefined;
  }
}
