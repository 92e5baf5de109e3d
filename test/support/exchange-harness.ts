import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FedgateError, createLogger, sleep } from "../../common/index.ts";
import {
  DEFAULT_BUCKETS,
  Exchange,
  connectBus,
  connectOptionsFor,
  createBusAuthority,
  mintAdminCredentials,
  mintClusterCredentials,
  serverAuthConfig,
  type AdminBus,
  type BusAuthority,
  type ExchangeOptions,
  type ServiceExportRecord,
} from "../../federation/index.ts";
import { startNats, type NatsEnv } from "../env/index.ts";
import { createClusterSetPki, type ClusterSetPki } from "./clusterset-pki.ts";

export interface HarnessOptions {
  clusters: readonly string[];
  nodes?: 1 | 3;
  leaseTtlMs: number;
}

/** A real NATS with JWT auth, a shared PKI, and one Exchange per simulated cluster, each with its own credentials. */
export class ExchangeHarness {
  readonly nats: NatsEnv;
  readonly pki: ClusterSetPki;
  readonly authority: BusAuthority;
  readonly admin: AdminBus;
  readonly exchanges = new Map<string, Exchange>();
  /** Every exchange's log lines (debug and up), written out by `dumpDiagnostics` when a test fails. */
  readonly logLines: string[] = [];
  private readonly buses: AdminBus[] = [];
  private readonly raw: NatsConnection[] = [];
  private readonly options: HarnessOptions;

  private constructor(fields: { nats: NatsEnv; pki: ClusterSetPki; authority: BusAuthority; admin: AdminBus; options: HarnessOptions }) {
    this.nats = fields.nats;
    this.pki = fields.pki;
    this.authority = fields.authority;
    this.admin = fields.admin;
    this.options = fields.options;
  }

  static async start(options: HarnessOptions): Promise<ExchangeHarness> {
    const authority = await createBusAuthority({ clusterSet: "test-set" });
    const nats = await startNats({ nodes: options.nodes ?? 1, serverConfig: serverAuthConfig(authority) });
    let admin: AdminBus | undefined;
    try {
      const pki = await createClusterSetPki(options.clusters);
      admin = await connectBus({ servers: nats.urls, name: "admin", ...connectOptionsFor(await mintAdminCredentials(authority)) });
      await ensureBucketsRetrying(admin, options.nodes === 3 ? 3 : 1);
      return new ExchangeHarness({ nats, pki, authority, admin, options });
    } catch (err) {
      // An open connection would keep reconnecting to the stopped servers, and the test process would never exit.
      await admin?.close();
      await nats.stop();
      throw err;
    }
  }

  /** Starts cluster `name`'s exchange with its own credentials; `servers` overrides where it connects (e.g. a proxy). */
  async startExchange(name: string, servers: string[] = this.nats.urls): Promise<Exchange> {
    const bus = await connectBus({ servers, name: `exchange/${name}`, ...connectOptionsFor(await mintClusterCredentials(this.authority, name)) });
    this.buses.push(bus);
    const exchange = new Exchange({
      bus,
      signer: this.pki.identity(name).signer,
      trustBundle: this.pki.bundle,
      leaseTtlMs: this.options.leaseTtlMs,
      logger: createLogger({ level: "debug", write: (line) => this.logLines.push(line) }),
      registration: testRegistration(this.pki, name),
    });
    await exchange.start();
    this.exchanges.set(name, exchange);
    return exchange;
  }

  async stopExchange(name: string): Promise<void> {
    await this.exchanges.get(name)?.close();
    this.exchanges.delete(name);
  }

  /** A raw KV handle with cluster `as`'s credentials (`"admin"` for the admin's), for writing what a well-behaved exchange never would. */
  async rawKv(as: string, bucket: string = DEFAULT_BUCKETS.exports): Promise<KV> {
    const credentials = as === "admin" ? await mintAdminCredentials(this.authority) : await mintClusterCredentials(this.authority, as);
    const nc = await connect({ servers: this.nats.urls, ...connectOptionsFor(credentials) });
    this.raw.push(nc);
    return new Kvm(nc).open(bucket);
  }

  /** Writes `facts` and the exchanges' logs to a file in the temp directory; returns its path. */
  async dumpDiagnostics(label: string, facts: Record<string, unknown>): Promise<string> {
    const path = join(tmpdir(), `fedgate-diag-${label}-${Date.now()}.log`);
    await writeFile(path, [JSON.stringify({ time: new Date().toISOString(), ...facts }, null, 1), ...this.logLines].join("\n") + "\n");
    return path;
  }

  async stop(): Promise<void> {
    for (const e of this.exchanges.values()) await e.close();
    for (const b of this.buses) await b.close().catch(() => undefined);
    for (const nc of this.raw) await nc.close().catch(() => undefined);
    await this.admin.close().catch(() => undefined);
    await this.nats.stop();
  }
}

/** Retries what an operator would: on a freshly formed 3-node cluster under load, the first R3 stream can take longer than one request timeout to create. */
async function ensureBucketsRetrying(admin: AdminBus, replicas: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await admin.ensureBuckets({ buckets: DEFAULT_BUCKETS, replicas, history: 1 });
    } catch (err) {
      if (!(err instanceof FedgateError && err.retryable) || Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

/** The registration every test exchange of cluster `name` publishes. */
export function testRegistration(pki: ClusterSetPki, name: string): ExchangeOptions["registration"] {
  return {
    name,
    clusterSet: "test-set",
    region: "region-1",
    zones: ["zone-a"],
    network: "net-1",
    gatewayAddresses: [{ host: "127.0.0.1", port: 15443 }],
    identity: `spiffe://${pki.trustDomain}/cluster/${name}/gateway`,
  };
}

export function exportOf(namespace: string, name: string, extra: Partial<ServiceExportRecord> = {}): ServiceExportRecord {
  return {
    namespace,
    name,
    ports: [{ name: "http", protocol: "TCP", port: 80 }],
    type: "ClusterSetIP",
    sessionAffinity: "None",
    exportCreatedAt: new Date().toISOString(),
    readyEndpoints: [{ zone: "zone-a", ready: 2 }],
    gateway: { host: "127.0.0.1", port: 15443 },
    ...extra,
  };
}
