import { createHash } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import type { ReconcileResult } from "../../common/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import { importPortKey, importPortName, type ImportPortAllocator } from "./import-ports.ts";
import { KubeApiError, type KubeApi } from "./kube-api.ts";
import { LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, MANAGED_BY, MCS_GROUP, MCS_VERSION, mergeExports } from "./mcs.ts";
import type { ResilientInformer } from "./resilient-informer.ts";

/** A namespace that does not exist here is not created: imports land only where the namespace already exists. */
const MISSING_NAMESPACE_RETRY_MS = 30_000;

export interface ImportReconcilerOptions {
  exchange: Exchange;
  api: KubeApi;
  /** The address of this cluster's gateway, where derived EndpointSlices point. */
  gatewayImportAddress: string;
  ports: ImportPortAllocator;
  services: ResilientInformer<k8s.V1Service>;
  /** Only slices this controller manages. */
  derivedSlices: ResilientInformer<k8s.V1EndpointSlice>;
}

/**
 * Bus → ServiceImport, derived Service and one EndpointSlice per exporting
 * cluster. Everything is server-side applied, so an unchanged import is a no-op
 * and a restart recreates nothing.
 */
export class ImportReconciler {
  private readonly o: ImportReconcilerOptions;

  constructor(options: ImportReconcilerOptions) {
    this.o = options;
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split("/") as [string, string];
    const merged = mergeExports(this.o.exchange.service(namespace, name)?.exports ?? []);
    const derivedName = derivedServiceName(name);
    const ours = this.o.derivedSlices.list(namespace).filter((s) => s.metadata?.labels?.[LABEL_SERVICE_NAME] === name);

    if (!merged) {
      for (const slice of ours) await this.o.api.delete({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: slice.metadata?.name ?? "", namespace } });
      await this.o.api.delete({ apiVersion: "v1", kind: "Service", metadata: { name: derivedName, namespace } });
      await this.o.api.delete({ apiVersion: `${MCS_GROUP}/${MCS_VERSION}`, kind: "ServiceImport", metadata: { name, namespace } });
      this.o.ports.release(`${namespace}/${name}/`);
      return;
    }

    const ports = merged.ports.map((p) => ({ ...p, gatewayPort: this.o.ports.portFor(importPortKey(namespace, name, p)) }));
    try {
      const serviceImport = {
        apiVersion: `${MCS_GROUP}/${MCS_VERSION}`,
        kind: "ServiceImport",
        metadata: { name, namespace, labels: { "app.kubernetes.io/managed-by": "fedgate" } },
        spec: {
          type: merged.type,
          ports: merged.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), protocol: p.protocol, port: p.port, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
          sessionAffinity: merged.sessionAffinity,
          ...(merged.sessionAffinityTimeoutSeconds ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: merged.sessionAffinityTimeoutSeconds } } } : {}),
          ...this.ipsOf(namespace, derivedName),
        },
      };
      await this.o.api.apply(serviceImport);
      const importObject = this.o.services.get(derivedName, namespace);
      await this.o.api.apply({
        apiVersion: "v1",
        kind: "Service",
        metadata: {
          name: derivedName,
          namespace,
          labels: { [LABEL_SERVICE_NAME]: name, "app.kubernetes.io/managed-by": "fedgate" },
          annotations: { "multicluster.fedgate.io/derived-from": `ServiceImport/${name}` },
        },
        spec: {
          type: "ClusterIP",
          ...(merged.type === "Headless" ? { clusterIP: "None" } : {}),
          ports: ports.map((p) => ({ name: importPortName(p), protocol: p.protocol, port: p.port, targetPort: p.gatewayPort })),
        },
      });
      await this.o.api.applyMcsStatus({ kind: "ServiceImport", namespace, name, status: { clusters: merged.clusters.map((cluster) => ({ cluster })) } });
      const exports = this.o.exchange.service(namespace, name)?.exports ?? [];
      for (const e of exports) {
        const ready = e.readyEndpoints.reduce((n, z) => n + z.ready, 0) > 0;
        await this.o.api.apply({
          apiVersion: "discovery.k8s.io/v1",
          kind: "EndpointSlice",
          metadata: {
            name: boundedName(`${derivedName}-${e.cluster}`),
            namespace,
            labels: {
              "kubernetes.io/service-name": derivedName,
              [LABEL_SERVICE_NAME]: name,
              [LABEL_SOURCE_CLUSTER]: e.cluster,
              [LABEL_MANAGED_BY]: MANAGED_BY,
            },
          },
          addressType: "IPv4",
          endpoints: [{ addresses: [this.o.gatewayImportAddress], conditions: { ready } }],
          ports: ports.filter((p) => e.ports.some((ep) => importPortName(ep) === importPortName(p))).map((p) => ({ name: importPortName(p), protocol: p.protocol, port: p.gatewayPort })),
        });
      }
      const exporting = new Set(exports.map((e) => e.cluster));
      for (const slice of ours) {
        if (!exporting.has(slice.metadata?.labels?.[LABEL_SOURCE_CLUSTER] ?? "")) {
          await this.o.api.delete({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: slice.metadata?.name ?? "", namespace } });
        }
      }
      // The derived Service's ClusterIP is allocated by the apiserver; copy it into spec.ips once known.
      return importObject?.spec?.clusterIP || merged.type === "Headless" ? undefined : { requeueAfterMs: 200 };
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return { requeueAfterMs: MISSING_NAMESPACE_RETRY_MS };
      throw err;
    }
  }

  private ipsOf(namespace: string, derivedName: string): { ips?: string[] } {
    const ip = this.o.services.get(derivedName, namespace)?.spec?.clusterIP;
    return ip && ip !== "None" ? { ips: [ip] } : {};
  }
}

/** The derived Service is named after the import, with a hash suffix when the name would not fit. */
export function derivedServiceName(name: string): string {
  return boundedName(`derived-${name}`);
}

function boundedName(name: string): string {
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, 54)}-${hash}`;
}
