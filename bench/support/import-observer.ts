import * as k8s from "@kubernetes/client-node";
import { asError } from "../../common/index.ts";
import { LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MANAGED_BY, MCS_GROUP, MCS_VERSION } from "../../federation/index.ts";

interface McsObject extends k8s.KubernetesObject {
  spec?: { ips?: string[] };
  status?: { conditions?: { type: string; status: string }[] };
}

/** When an import (namespace/name) became complete in this cluster, by the observer's clock (performance.now()). */
export interface ImportSeen {
  /** Both the ServiceImport and its derived EndpointSlice exist. */
  presentAt: number;
  /** ... and the ServiceImport also carries its ClusterSetIP in spec.ips. */
  withIpsAt: number;
}

const keyOf = (o: k8s.KubernetesObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;

/**
 * Watches (never polls) one cluster's ServiceImports, fedgate's derived
 * EndpointSlices and ServiceExports, and timestamps each event on arrival.
 * Watches restart from the last resourceVersion if the server ends them.
 */
export class ImportObserver {
  private readonly watch: k8s.Watch;
  private readonly aborts: AbortController[] = [];
  private readonly imports = new Map<string, number>();
  private readonly importIps = new Map<string, number>();
  private readonly slices = new Map<string, number>();
  private readonly readyExports = new Set<string>();
  private readonly seen = new Map<string, ImportSeen>();
  private readonly waiters = new Map<string, (seen: ImportSeen) => void>();
  private stopped = false;

  private constructor(kubeConfig: k8s.KubeConfig) {
    this.watch = new k8s.Watch(kubeConfig);
  }

  static async start(kubeConfig: k8s.KubeConfig): Promise<ImportObserver> {
    const o = new ImportObserver(kubeConfig);
    await Promise.all([
      o.follow(`/apis/${MCS_GROUP}/${MCS_VERSION}/serviceimports`, {}, (phase, si: McsObject, now) => {
        const key = keyOf(si);
        if (phase === "DELETED") return o.forget(key, o.imports, o.importIps);
        if (!o.imports.has(key)) o.imports.set(key, now);
        if (si.spec?.ips?.length && !o.importIps.has(key)) o.importIps.set(key, now);
        o.check(key);
      }),
      o.follow("/apis/discovery.k8s.io/v1/endpointslices", { labelSelector: `${LABEL_MANAGED_BY}=${MANAGED_BY}` }, (phase, slice: k8s.V1EndpointSlice, now) => {
        const key = `${slice.metadata?.namespace}/${slice.metadata?.labels?.[LABEL_SERVICE_NAME]}`;
        if (phase === "DELETED") return o.forget(key, o.slices);
        if (!o.slices.has(key)) o.slices.set(key, now);
        o.check(key);
      }),
      o.follow(`/apis/${MCS_GROUP}/${MCS_VERSION}/serviceexports`, {}, (phase, se: McsObject) => {
        const ready = phase !== "DELETED" && se.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");
        if (ready) o.readyExports.add(keyOf(se));
        else o.readyExports.delete(keyOf(se));
      }),
    ]);
    return o;
  }

  /** Resolves when `key`'s import is complete here (immediately if it already is). */
  whenImported(key: string): Promise<ImportSeen> {
    const seen = this.seen.get(key);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.set(key, resolve));
  }

  /** Imports complete with their ClusterSetIP, and local exports whose Ready condition is True. */
  counts(): { importsWithIps: number; readyExports: number } {
    let importsWithIps = 0;
    for (const s of this.seen.values()) if (s.withIpsAt) importsWithIps += 1;
    return { importsWithIps, readyExports: this.readyExports.size };
  }

  stop(): void {
    this.stopped = true;
    for (const a of this.aborts) a.abort();
  }

  private check(key: string): void {
    const si = this.imports.get(key);
    const slice = this.slices.get(key);
    if (si === undefined || slice === undefined) return;
    const ips = this.importIps.get(key);
    const previous = this.seen.get(key);
    if (previous && (previous.withIpsAt || ips === undefined)) return;
    const seen = { presentAt: previous?.presentAt ?? Math.max(si, slice), withIpsAt: ips === undefined ? 0 : Math.max(ips, slice) };
    this.seen.set(key, seen);
    if (seen.withIpsAt) {
      this.waiters.get(key)?.(seen);
      this.waiters.delete(key);
    }
  }

  private forget(key: string, ...maps: Map<string, number>[]): void {
    for (const m of maps) m.delete(key);
    this.seen.delete(key);
  }

  private async follow<T extends k8s.KubernetesObject>(path: string, query: Record<string, string>, handle: (phase: string, obj: T, now: number) => void): Promise<void> {
    let resourceVersion: string | undefined;
    const start = async (): Promise<void> => {
      const abort = await this.watch.watch(
        path,
        { ...query, allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) },
        (phase: string, obj: T) => {
          const now = performance.now();
          resourceVersion = obj.metadata?.resourceVersion ?? resourceVersion;
          if (phase !== "BOOKMARK") handle(phase, obj, now);
        },
        (err: unknown) => {
          if (this.stopped) return;
          if (err) {
            // Possibly 410 Gone: start over; first-seen times are kept, so a replay changes nothing.
            process.stderr.write(`watch ${path} ended: ${asError(err).message}; restarting\n`);
            resourceVersion = undefined;
          }
          void start();
        },
      );
      this.aborts.push(abort);
    };
    await start();
  }
}
