import { z } from "zod";

/** What a controller child needs to join the ClusterSet: its apiserver, its bus credentials and its signing identity. */
export const ControllerChildConfig = z.strictObject({
  cluster: z.string(),
  /** kubeconfig YAML for this cluster's apiserver. */
  kubeconfig: z.string(),
  natsUrls: z.array(z.string()).min(1),
  creds: z.strictObject({ jwt: z.string(), seed: z.string(), creds: z.string(), inboxPrefix: z.string() }),
  chainPem: z.string(),
  keyPem: z.string(),
  bundlePem: z.string(),
  trustDomain: z.string(),
  clusterSet: z.string(),
  leaseTtlMs: z.number().int().positive(),
  gatewayImportAddress: z.string(),
});
export type ControllerChildConfig = z.infer<typeof ControllerChildConfig>;

export const ParentMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("start"), config: ControllerChildConfig }),
  /** `gc`: collect garbage first, so heap figures are live data, not floating garbage. */
  z.strictObject({ type: z.literal("usage"), gc: z.boolean() }),
  z.strictObject({ type: z.literal("stop") }),
]);
export type ParentMessage = z.infer<typeof ParentMessage>;

export const Usage = z.strictObject({
  rssBytes: z.number(),
  heapUsedBytes: z.number(),
  heapTotalBytes: z.number(),
  externalBytes: z.number(),
  /** User + system CPU time since the child started. */
  cpuUs: z.number(),
  /** Lines the controller and exchange logged at warn or error. */
  errorLogs: z.number(),
  /** HTTP write requests (anything but GET) this process sent, i.e. its calls to the apiserver, and their summed response times. */
  writeRequests: z.number(),
  writeRequestMs: z.number(),
});
export type Usage = z.infer<typeof Usage>;

export const ChildMessage = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("started") }),
  z.strictObject({ type: z.literal("usage"), usage: Usage }),
  z.strictObject({ type: z.literal("stopped") }),
  z.strictObject({ type: z.literal("failed"), message: z.string() }),
]);
export type ChildMessage = z.infer<typeof ChildMessage>;
