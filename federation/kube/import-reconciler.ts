import { createHash } from "node:crypto";
import type * as k8s from "@kubernetes/client-node";
import { FedgateError, type ReconcileResult } from "../../common/index.ts";
import type { Exchange } from "../exchange/exchange.ts";
import { importPortKey, importPortName, type ImportPortAllocator } from "./import-ports.ts";
import type { EventRecorder } from "./event-recorder.ts";
import type { KubeApi } from "./kube-api.ts";
import { APP_MANAGED_BY, LABEL_APP_MANAGED_BY, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SOURCE_CLUSTER, MANAGED_BY, MCS_GROUP, MCS_VERSION, mergeExports } from "./mcs.ts";
import type { ResilientInformer } from "./resilient-informer.ts";

const SERVICE_IMPORT_API_VERSION = `${MCS_GROUP}/${MCS_VERSION}`;

/** An object fedgate would write already exists and belongs to someone else; fedgate leaves it alone. */
export class ForeignObjectError extends FedgateError {
  constructor(kind: string, namespace: string, name: string) {
    super("FEDGATE_KUBE_FOREIGN_OBJECT", `${kind} ${namespace}/${name} exists and is not managed by fedgate; the import is not written`, { retryable: false });
  }
}

export interface ImportReconcilerOptions {
  exchange: Exchange;
  api: KubeApi;
  /** The address of this cluster's gateway, where derived EndpointSlices point. */
  gatewayImportAddress: string;
  ports: ImportPortAllocator;
  events: EventRecorder;
  serviceImports: ResilientInformer<k8s.KubernetesObject>;
  namespaces: ResilientInformer<k8s.V1Namespace>;
  /** Create a missing namespace for an import; otherwise the import waits until the namespace exists. */
  createNamespaces: boolean;
  services: ResilientInformer<k8s.V1Service>;
  /** Only slices this controller manages. */
  derivedSlices: ResilientInformer<k8s.V1EndpointSlice>;
}

const ownedByFedgate = (o: k8s.KubernetesObject | undefined) => o?.metadata?.labels?.[LABEL_APP_MANAGED_BY] === APP_MANAGED_BY;

/**
 * Bus → ServiceImport, derived Service and one EndpointSlice per exporting
 * cluster. Everything is server-side applied, so an unchanged import is a no-op
 * and a restart recreates nothing. The derived objects are owner-referenced to
 * the ServiceImport, and nothing fedgate did not create is ever written.
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
    const existingImport = this.o.serviceImports.get(name, namespace);
    const existingService = this.o.services.get(derivedName, namespace);

    if (!merged) {
      await this.removeImport(namespace, name, { serviceImport: existingImport, service: existingService });
      return;
    }
    const mine = [
      { apiVersion: SERVICE_IMPORT_API_VERSION, kind: "ServiceImport", existing: existingImport },
      { apiVersion: "v1", kind: "Service", existing: existingService },
    ];
    for (const { apiVersion, kind, existing } of mine) {
      if (!existing || ownedByFedgate(existing)) continue;
      const error = new ForeignObjectError(kind, namespace, existing.metadata?.name ?? "");
      await this.o.events.record({ regarding: { ...existing, apiVersion, kind }, type: "Warning", reason: "ForeignObject", action: "Import", note: error.message });
      throw error;
    }

    const namespaceObject = this.o.namespaces.get(namespace);
    if (!namespaceObject || namespaceObject.metadata?.deletionTimestamp) {
      // Without the setting, the namespace informer requeues this import when the namespace appears.
      if (!this.o.createNamespaces || namespaceObject) return;
      await this.o.api.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace, labels: { [LABEL_APP_MANAGED_BY]: APP_MANAGED_BY } } });
    }

    const ports = merged.ports.map((p) => ({ ...p, gatewayPort: this.o.ports.portFor(importPortKey(namespace, name, p)) }));
    // Each apply passes the cached object, so a pass over a converged import sends nothing.
    const applyImport = (derived: k8s.V1Service | undefined): Promise<k8s.KubernetesObject> =>
      this.o.api.apply<k8s.KubernetesObject & { spec?: object }>({
        apiVersion: SERVICE_IMPORT_API_VERSION,
        kind: "ServiceImport",
        metadata: { name, namespace, labels: { [LABEL_APP_MANAGED_BY]: APP_MANAGED_BY } },
        spec: {
          type: merged.type,
          ports: merged.ports.map((p) => ({ ...(p.name ? { name: p.name } : {}), protocol: p.protocol, port: p.port, ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}) })),
          sessionAffinity: merged.sessionAffinity,
          ...(merged.sessionAffinityTimeoutSeconds ? { sessionAffinityConfig: { clientIP: { timeoutSeconds: merged.sessionAffinityTimeoutSeconds } } } : {}),
          ...ipsOf(derived),
        },
      }, existingImport ? { current: existingImport } : {});
    // The derived Service is owned by the ServiceImport, so a new import is created first, without
    // ips; the Service's apply then answers with its ClusterIP, and the import is applied once more
    // with it. An existing import is applied once, after the Service, so its ips never lapse.
    const uid = existingImport?.metadata?.uid ?? (await applyImport(undefined)).metadata?.uid ?? "";
    const ownerReferences = [{ apiVersion: SERVICE_IMPORT_API_VERSION, kind: "ServiceImport", name, uid }];
    const derived = await this.o.api.apply<k8s.V1Service>({
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: derivedName,
        namespace,
        labels: { [LABEL_SERVICE_NAME]: name, [LABEL_APP_MANAGED_BY]: APP_MANAGED_BY },
        annotations: { "multicluster.fedgate.io/derived-from": `ServiceImport/${name}` },
        ownerReferences,
      },
      spec: {
        type: "ClusterIP",
        ...(merged.type === "Headless" ? { clusterIP: "None" } : {}),
        ports: ports.map((p) => ({ name: importPortName(p), protocol: p.protocol, port: p.port, targetPort: p.gatewayPort })),
      },
    }, existingService ? { current: existingService } : {});
    await applyImport(derived);
    await this.o.api.applyMcsStatus({ kind: "ServiceImport", namespace, name, status: { clusters: merged.clusters.map((cluster) => ({ cluster })) }, ...(existingImport ? { current: existingImport } : {}) });
    const exports = this.o.exchange.service(namespace, name)?.exports ?? [];
    for (const e of exports) {
      const ready = e.readyEndpoints.reduce((n, z) => n + z.ready, 0) > 0;
      const sliceName = boundedName(`${derivedName}-${e.cluster}`);
      const existingSlice = this.o.derivedSlices.get(sliceName, namespace);
      await this.o.api.apply<k8s.V1EndpointSlice>({
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: {
          name: sliceName,
          namespace,
          labels: {
            "kubernetes.io/service-name": derivedName,
            [LABEL_SERVICE_NAME]: name,
            [LABEL_SOURCE_CLUSTER]: e.cluster,
            [LABEL_MANAGED_BY]: MANAGED_BY,
          },
          ownerReferences,
        },
        addressType: "IPv4",
        endpoints: [{ addresses: [this.o.gatewayImportAddress], conditions: { ready } }],
        ports: ports.filter((p) => e.ports.some((ep) => importPortName(ep) === importPortName(p))).map((p) => ({ name: importPortName(p), protocol: p.protocol, port: p.gatewayPort })),
      }, existingSlice ? { current: existingSlice } : {});
    }
    const exporting = new Set(exports.map((e) => e.cluster));
    for (const slice of this.derivedSlicesOf(namespace, name)) {
      if (!exporting.has(slice.metadata?.labels?.[LABEL_SOURCE_CLUSTER] ?? "")) await this.deleteSlice(namespace, slice);
    }
  }

  /** The last exporter is gone: remove what fedgate created, and only that. */
  private async removeImport(namespace: string, name: string, existing: { serviceImport: k8s.KubernetesObject | undefined; service: k8s.V1Service | undefined }): Promise<void> {
    for (const slice of this.derivedSlicesOf(namespace, name)) await this.deleteSlice(namespace, slice);
    if (ownedByFedgate(existing.service)) await this.o.api.delete({ apiVersion: "v1", kind: "Service", metadata: { name: derivedServiceName(name), namespace } });
    if (ownedByFedgate(existing.serviceImport)) await this.o.api.delete({ apiVersion: SERVICE_IMPORT_API_VERSION, kind: "ServiceImport", metadata: { name, namespace } });
    this.o.ports.release(`${namespace}/${name}/`);
  }

  private derivedSlicesOf(namespace: string, name: string): readonly k8s.V1EndpointSlice[] {
    return this.o.derivedSlices.list(namespace).filter((s) => s.metadata?.labels?.[LABEL_SERVICE_NAME] === name);
  }

  private deleteSlice(namespace: string, slice: k8s.V1EndpointSlice): Promise<void> {
    return this.o.api.delete({ apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name: slice.metadata?.name ?? "", namespace } });
  }
}

function ipsOf(derived: k8s.V1Service | undefined): { ips?: string[] } {
  const ip = derived?.spec?.clusterIP;
  return ip && ip !== "None" ? { ips: [ip] } : {};
}

export const DERIVED_PREFIX = "derived-";

/** The derived Service is named after the import, with a hash suffix when the name would not fit. */
export function derivedServiceName(name: string): string {
  return boundedName(`${DERIVED_PREFIX}${name}`);
}

function boundedName(name: string): string {
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 8);
  return `${name.slice(0, 54)}-${hash}`;
}
