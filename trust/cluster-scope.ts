import { ia5, seq, tlv } from "./der.ts";
import { NameConstraintError } from "./errors.ts";
import { OID } from "./oids.ts";
import { isValidClusterName } from "./spiffe-id.ts";
import type { Certificate, NameConstraints } from "./certificate.ts";

/**
 * How an intermediate CA is confined to one cluster.
 *
 * Two layers, because X.509 name constraints cannot express a URI path:
 *
 * 1. A critical nameConstraints extension permits URI SANs whose *host* is the
 *    trust domain. RFC 5280 §4.2.1.10 (and OpenSSL's `nc_uri`) compare only the
 *    host of a URI, never its path, so this keeps a leaked cluster key inside
 *    the trust domain for every verifier, OpenSSL included.
 * 2. The intermediate's subject names its cluster:
 *    `O=<trust-domain>, OU=fedgate-cluster, CN=<cluster>`. The root signs that
 *    subject, so it is as authoritative as the extension. fedgate's verifier
 *    reads it and requires the leaf's SPIFFE ID to sit under
 *    `spiffe://<trust-domain>/cluster/<cluster>/`. OpenSSL cannot check this
 *    layer; fedgate's verifier (`verifyPeer`) always does.
 *
 * fedgate deliberately adds no private X.509 extension for the path scope: it
 * would need an OID arc fedgate does not own, and it would say nothing the
 * signed subject does not already say.
 */

/** The OU value marking an intermediate as a fedgate cluster CA. */
export const CLUSTER_CA_UNIT = "fedgate-cluster";

/** Subject of a cluster's intermediate, in the JSON form @peculiar/x509 takes (one RDN per attribute). */
export function intermediateSubject(trustDomain: string, cluster: string): Record<string, string[]>[] {
  return [{ O: [trustDomain] }, { OU: [CLUSTER_CA_UNIT] }, { CN: [cluster] }];
}

/** DER value of a nameConstraints extension permitting URIs whose host is one of `hosts`. */
export function encodeUriNameConstraints(hosts: readonly string[]): Uint8Array {
  return seq(tlv(0xa0, ...hosts.map((h) => seq(ia5(h, 0x86)))));
}

export const NAME_CONSTRAINTS_OID = OID.nameConstraints;

/**
 * The cluster an intermediate was issued for, read from its subject. Throws
 * NameConstraintError if the certificate is not a fedgate cluster CA of
 * `trustDomain`.
 */
export function clusterOfIntermediate(cert: Certificate, trustDomain: string): string {
  const o = cert.subjectField(OID.organizationName);
  const ou = cert.subjectField(OID.organizationalUnitName);
  const cn = cert.subjectField(OID.commonName);
  if (o.length !== 1 || ou.length !== 1 || cn.length !== 1 || ou[0] !== CLUSTER_CA_UNIT) {
    throw new NameConstraintError("issuing CA is not a fedgate cluster CA (subject must be O=<trust-domain>, OU=fedgate-cluster, CN=<cluster>)");
  }
  if (o[0] !== trustDomain) throw new NameConstraintError(`issuing CA belongs to trust domain ${o[0]}, not ${trustDomain}`);
  const cluster = cn[0]!;
  if (!isValidClusterName(cluster)) throw new NameConstraintError(`issuing CA names an invalid cluster ${JSON.stringify(cluster)}`);
  return cluster;
}

/** The host of a URI the way OpenSSL's `nc_uri` finds it: after `scheme://`, up to `:` or `/`. */
export function uriHost(uri: string): string | undefined {
  const colon = uri.indexOf(":");
  if (colon < 1 || uri.slice(colon, colon + 3) !== "://") return undefined;
  const rest = uri.slice(colon + 3);
  const end = rest.search(/[:/]/);
  const host = end < 0 ? rest : rest.slice(0, end);
  return host.length ? host : undefined;
}

function hostMatches(host: string, base: string): boolean {
  const h = host.toLowerCase();
  const b = base.toLowerCase();
  if (b.startsWith(".")) return h.length > b.length && h.endsWith(b);
  return h === b;
}

/**
 * Checks a URI against URI name constraints exactly as RFC 5280 (and OpenSSL)
 * do: by host only. Returns a reason when it is not permitted.
 */
export function uriConstraintViolation(uri: string, nc: NameConstraints): string | undefined {
  const host = uriHost(uri);
  if (host === undefined) return `URI ${uri} has no host`;
  if (nc.excludedUris.some((b) => hostMatches(host, b))) return `URI host ${host} is excluded`;
  if (nc.permittedUris.length && !nc.permittedUris.some((b) => hostMatches(host, b))) return `URI host ${host} is outside the permitted subtrees ${nc.permittedUris.join(", ")}`;
  return undefined;
}
