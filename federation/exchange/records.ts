import { z } from "zod";
import { dnsLabelProblems } from "./dns-label.ts";

/**
 * Bus records, version 1.
 *
 * Evolution rule: `v` is the major version of the envelope and bodies.
 * - Additive changes (a new optional field) keep `v`. A v1 reader verifies the
 *   signature over the record as sent, then drops fields it does not know.
 * - Any change that alters the meaning of an existing field bumps `v`. A reader
 *   never applies a record whose `v` it does not know: it counts it as
 *   `unsupported-version`, logs it once and keeps the last good value for that
 *   key. Each registration lists the versions its cluster reads
 *   (`readVersions`), and a writer emits the highest version that every live
 *   member reads, so a rolling upgrade never strands a reader.
 */
export const RECORD_VERSION = 1;

export const dnsLabel = z.string().superRefine((value, ctx) => {
  for (const problem of dnsLabelProblems(value)) ctx.addIssue({ code: "custom", message: problem.message });
});

const host = z.string().min(1).max(253);
const port = z.number().int().min(1).max(65_535);
export const endpointAddress = z.object({ host, port }).strict();

export const clusterRegistration = z.object({
  name: dnsLabel,
  clusterSet: z.string().min(1).max(253),
  region: z.string().max(63),
  zones: z.array(z.string().min(1).max(63)).max(64),
  network: z.string().max(63),
  gatewayAddresses: z.array(endpointAddress).min(1).max(16),
  /** The SPIFFE ID the cluster's gateway presents. */
  identity: z.string().startsWith("spiffe://").max(2048),
  readVersions: z.array(z.number().int().positive()).min(1).max(16),
});

export const clusterLease = z.object({
  ttlMs: z.number().int().positive(),
  /** Changes when the controller restarts, so peers can tell a restart from a renewal. */
  incarnation: z.string().min(1).max(64),
});

export const servicePort = z.object({
  name: z.string().max(63).optional(),
  protocol: z.enum(["TCP", "UDP", "SCTP"]),
  port,
  appProtocol: z.string().max(256).optional(),
});

export const serviceExport = z.object({
  namespace: dnsLabel,
  name: dnsLabel,
  ports: z.array(servicePort).max(100),
  type: z.enum(["ClusterSetIP", "Headless"]),
  sessionAffinity: z.enum(["None", "ClientIP"]),
  sessionAffinityTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  /** The ServiceExport's creationTimestamp: the oldest export wins a conflict. */
  exportCreatedAt: z.iso.datetime(),
  /** Ready endpoints per zone, for locality weighting. */
  readyEndpoints: z.array(z.object({ zone: z.string().max(63), ready: z.number().int().min(0) })).max(64),
  /** The gateway address that serves this export to other clusters. */
  gateway: endpointAddress,
  /** When set, only these clusters may import the export. */
  consumers: z.array(dnsLabel).max(255).optional(),
});

export const recordSignature = z.object({
  alg: z.enum(["ES256", "ES384", "RS256"]),
  /** The signer's chain, leaf first, base64 DER. */
  chain: z.array(z.string().max(16_384)).min(1).max(4),
  value: z.string().max(2_048),
});

const envelopeFields = {
  v: z.number().int().positive(),
  origin: dnsLabel,
  /** Increases with every write of a key by its origin; an older generation is never applied over a newer one. */
  generation: z.number().int().min(0),
  sig: recordSignature,
};

export const recordEnvelope = z.discriminatedUnion("kind", [
  z.object({ ...envelopeFields, kind: z.literal("cluster"), body: clusterRegistration }),
  z.object({ ...envelopeFields, kind: z.literal("lease"), body: clusterLease }),
  z.object({ ...envelopeFields, kind: z.literal("export"), body: serviceExport }),
]);

export type ClusterRegistration = z.infer<typeof clusterRegistration>;
export type ClusterLease = z.infer<typeof clusterLease>;
export type ServicePort = z.infer<typeof servicePort>;
export type ServiceExportRecord = z.infer<typeof serviceExport>;
export type EndpointAddress = z.infer<typeof endpointAddress>;
export type RecordSignature = z.infer<typeof recordSignature>;
export type RecordEnvelope = z.infer<typeof recordEnvelope>;
export type RecordKind = RecordEnvelope["kind"];
export type RecordBody<K extends RecordKind> = Extract<RecordEnvelope, { kind: K }>["body"];
