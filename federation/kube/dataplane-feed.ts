import { asError, silentLogger, type Logger } from "../../common/index.ts";
import type { FederationSnapshotInput } from "../../gateway/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import type { FederationController } from "./controller.ts";

/** Where snapshots go: the xDS server (`XdsServer.setSnapshot`), which validates and debounces them. */
export interface XdsSink {
  setSnapshot(snapshot: FederationSnapshotInput): void;
}

export interface DataplaneFeedOptions {
  controller: FederationController;
  exchange: Exchange;
  sink: XdsSink;
  self: FederationSnapshotInput["self"];
  /** The gateway's current certificate, key and trust bundle; read on every snapshot, so rotation is a `refresh()`. Revocation lists are the exchange's. */
  tls: () => FederationSnapshotInput["tls"];
  proxyless?: FederationSnapshotInput["proxyless"];
  logger?: Logger;
}

/**
 * Keeps this cluster's xDS server fed: the exchange's merged view, the
 * controller's local backends, policies and TLS, as one snapshot rebuilt
 * whenever any of them may have changed. Bursts of changes within one tick
 * become one snapshot; the server's debounce handles the rest.
 */
export class DataplaneFeed {
  private readonly o: DataplaneFeedOptions;
  private readonly log: Logger;
  private readonly stopped = new AbortController();
  private unsubscribe: (() => void) | undefined;
  private watching: Promise<void> | undefined;
  private scheduled = false;
  private snapshots = 0;
  private rejections = 0;

  constructor(options: DataplaneFeedOptions) {
    this.o = options;
    this.log = (options.logger ?? silentLogger).child({ component: "dataplane-feed" });
  }

  start(): void {
    this.unsubscribe = this.o.controller.onDataplaneChange(() => this.refresh());
    const clusters = this.o.exchange.watchClusters({ signal: this.stopped.signal });
    const trust = this.o.exchange.watchTrust({ signal: this.stopped.signal });
    const refreshOn = async (changes: AsyncIterableIterator<unknown, undefined>) => {
      for (let next = await changes.next(); !next.done; next = await changes.next()) this.refresh();
    };
    // A cluster's registration or liveness changed; or a newer trust bundle or revocation list arrived over the bus.
    this.watching = Promise.all([refreshOn(clusters), refreshOn(trust)]).then(() => undefined);
    this.push();
  }

  /** Schedules a rebuild (coalesced within the current tick). */
  refresh(): void {
    if (this.scheduled || this.stopped.signal.aborted) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.stopped.signal.aborted) this.push();
    });
  }

  stats(): { snapshots: number; rejections: number } {
    return { snapshots: this.snapshots, rejections: this.rejections };
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    this.unsubscribe?.();
    await this.watching;
  }

  private push(): void {
    try {
      this.o.sink.setSnapshot({
        self: this.o.self,
        services: this.o.exchange.services(),
        clusters: this.o.exchange.clusters(),
        localEndpoints: this.o.controller.localEndpoints(),
        policies: this.o.controller.policies(),
        importPorts: this.o.controller.importPorts(),
        // Revocation lists come from the bus, where the exchange checked each was signed by a root and fresh.
        tls: { ...this.o.tls(), revocationsPem: this.o.exchange.revocations().pem },
        ...(this.o.proxyless ? { proxyless: this.o.proxyless } : {}),
      });
      this.snapshots++;
    } catch (err) {
      // The server keeps serving its last good snapshot; the next change tries again.
      this.rejections++;
      this.log.warn("snapshot rejected; the data plane keeps its last good config", { err: asError(err) });
    }
  }
}
