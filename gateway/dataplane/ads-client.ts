import { ADS_METHOD_PATH, type DecodedDiscoveryResponse } from "../xds/ads-codec.ts";
import type { DiscoveryRequest } from "../xds/ads-session.ts";
import { kindOfTypeUrl, RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "../xds/type-urls.ts";
import { AdsStream, decodeResource, nackDetail, type AdsClientOptions } from "./ads-stream.ts";

/**
 * The data plane's state-of-the-world ADS client. Clusters and Listeners are
 * wildcard subscriptions; ClusterLoadAssignments, Routes and Secrets are
 * subscribed by name as the config references them. Every response is ACKed
 * or NACKed (with the problems, keeping the last accepted version). A new
 * stream resubscribes with the versions it holds.
 */
export class AdsClient extends AdsStream<DiscoveryRequest, DecodedDiscoveryResponse> {
  private readonly subscriptions = new Map<ResourceKind, string[]>();
  private readonly accepted = new Map<ResourceKind, string>();
  private readonly nonces = new Map<ResourceKind, string>();

  constructor(options: AdsClientOptions) {
    super(options, ADS_METHOD_PATH);
    this.subscriptions.set("cluster", []);
    this.subscriptions.set("listener", []);
  }

  /** Sets the names of a by-name type; sends a request only when they changed. */
  subscribe(kind: ResourceKind, names: readonly string[]): void {
    const sorted = [...new Set(names)].sort();
    const current = this.subscriptions.get(kind);
    if (current && current.length === sorted.length && current.every((n, i) => n === sorted[i])) return;
    this.subscriptions.set(kind, sorted);
    this.request(kind);
  }

  protected encode(request: DiscoveryRequest): Buffer {
    return this.codec.encodeRequest(request);
  }

  protected decode(bytes: Buffer): DecodedDiscoveryResponse {
    return this.codec.decodeResponse(bytes);
  }

  protected onOpen(): void {
    // Wildcards first (CDS before EDS, LDS before RDS), then whatever by-name subscriptions we hold.
    for (const kind of RESOURCE_KINDS) if (this.subscriptions.has(kind)) this.request(kind);
  }

  protected override onBroken(): void {
    this.nonces.clear();
  }

  private request(kind: ResourceKind, errorDetail?: { code: number; message: string }, nonce?: string): void {
    this.write((node) => ({
      versionInfo: this.accepted.get(kind) ?? "",
      node,
      resourceNames: this.subscriptions.get(kind) ?? [],
      typeUrl: TYPE_URL[kind],
      responseNonce: nonce ?? this.nonces.get(kind) ?? "",
      errorDetail,
    }));
  }

  protected async onResponse(response: DecodedDiscoveryResponse): Promise<void> {
    const kind = kindOfTypeUrl(response.typeUrl);
    if (!kind) {
      this.options.logger.warn("ADS response of an unknown type ignored", { typeUrl: response.typeUrl });
      return;
    }
    this.nonces.set(kind, response.nonce);
    const decoded = response.resources.map((r, i) => decodeResource(this.options.registry, response.typeUrl, r, i));
    const problems = await this.apply(kind, decoded, `version ${response.versionInfo}`);
    if (problems.length === 0) this.accepted.set(kind, response.versionInfo);
    this.request(kind, problems.length ? nackDetail(problems) : undefined, response.nonce);
  }
}
