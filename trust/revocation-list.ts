import { createHash } from "node:crypto";
import { z } from "zod";
import { algorithmOid, type Certificate } from "./certificate.ts";
import { DerReader, TAG, bytesEqual, toHex, type DerNode } from "./der.ts";
import { MalformedInputError, RevocationUnknownSignerError, StaleRevocationError, WrongTrustDomainError } from "./errors.ts";
import { OID } from "./oids.ts";
import { zodProblems } from "./options.ts";
import { MAX_DER_BYTES, MAX_PEM_CHARS, PEM_LABEL, decodePem, derFromInput, encodePem } from "./pem.ts";
import { isSignedBy } from "./signature.ts";
import type { TrustBundle } from "./trust-bundle.ts";

/**
 * Cluster revocation, the standard way: the root that issued a cluster's
 * intermediate signs an X.509 CRL (RFC 5280 §5) listing that intermediate's
 * serial number. Every identity under a listed intermediate is refused by
 * `verifyPeer` (`ClusterRevokedError`), for TLS peers and for bus records
 * alike. The CRL is its own signature and version (cRLNumber), so it travels
 * over any channel a mere writer could tamper with, like signed bundles.
 */

/** Entries in one CRL beyond this are refused (a ClusterSet has at most a few thousand intermediates). */
export const MAX_CRL_ENTRIES = 16_384;
/** Roots one revocation document may cover (a bundle holds two during a rotation). */
export const MAX_CRLS_PER_DOCUMENT = 8;
export const REVOCATIONS_KIND = "fedgate.revocations";
/** A list dated this far ahead of the receiver's clock is still accepted (clusters' clocks drift a little). */
const CLOCK_SKEW_MS = 5 * 60 * 1000;

/** One parsed, structurally valid CRL. Its signature is checked by `acceptRevocations`, against a bundle. */
export class RevocationList {
  readonly der: Uint8Array;
  readonly fingerprint: string;
  readonly tbs: Uint8Array;
  readonly signatureAlgorithm: string;
  readonly signature: Uint8Array;
  readonly issuerDer: Uint8Array;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly crlNumber: bigint;
  /** Revoked serial numbers, lowercase hex as `Certificate.serialNumber` spells them. */
  readonly revokedSerials: ReadonlySet<string>;

  private constructor(fields: Omit<RevocationList, "pem">) {
    this.der = fields.der;
    this.fingerprint = fields.fingerprint;
    this.tbs = fields.tbs;
    this.signatureAlgorithm = fields.signatureAlgorithm;
    this.signature = fields.signature;
    this.issuerDer = fields.issuerDer;
    this.thisUpdate = fields.thisUpdate;
    this.nextUpdate = fields.nextUpdate;
    this.crlNumber = fields.crlNumber;
    this.revokedSerials = fields.revokedSerials;
  }

  get pem(): string {
    return encodePem(PEM_LABEL.crl, this.der);
  }

  /** Parses one CRL (PEM or DER), strictly; every failure is a `MalformedInputError`. */
  static parse(input: string | Uint8Array): RevocationList {
    const der = new Uint8Array(derFromInput(input, PEM_LABEL.crl, "crl"));
    const r: DerReader = new DerReader("crl");
    const list = r.readExact(der, TAG.SEQUENCE, "CertificateList");
    const [tbsNode, sigAlgNode, sigNode, ...extra] = r.children(list, "CertificateList", 4);
    if (!tbsNode || !sigAlgNode || !sigNode || extra.length) r.fail("CertificateList must have tbsCertList, signatureAlgorithm, signatureValue");
    r.expectTag(tbsNode, TAG.SEQUENCE, "tbsCertList");
    const fields = r.children(tbsNode, "tbsCertList", 8);
    let i = 0;
    // fedgate issues v2 CRLs only: the cRLNumber extension is its version.
    if (fields[i]?.tag !== TAG.INTEGER || r.smallInt(fields[i]!, "version") !== 1) r.fail("only v2 CRLs are accepted");
    i++;
    const innerAlg = fields[i++];
    const issuer = fields[i++];
    const thisUpdate = fields[i++];
    if (!innerAlg || !issuer || !thisUpdate) r.fail("tbsCertList: missing fields");
    if (!bytesEqual(innerAlg.raw, sigAlgNode.raw)) r.fail("signature algorithm differs between tbsCertList and CertificateList");
    r.expectTag(issuer, TAG.SEQUENCE, "issuer");
    const next = fields[i];
    if (!next || (next.tag !== TAG.UTC_TIME && next.tag !== TAG.GENERALIZED_TIME)) r.fail("nextUpdate is required");
    i++;
    const revokedSerials = new Set<string>();
    if (fields[i]?.tag === TAG.SEQUENCE) {
      for (const entry of r.children(fields[i]!, "revokedCertificates", MAX_CRL_ENTRIES)) revokedSerials.add(parseEntry(r, entry));
      i++;
    }
    const extensionsNode = fields[i];
    if (!extensionsNode || extensionsNode.tag !== 0xa0 || fields.length !== i + 1) r.fail("tbsCertList: crlExtensions (with cRLNumber) must come last");
    const [extensions, ...more] = r.children(extensionsNode, "crlExtensions", 2);
    if (!extensions || more.length) r.fail("crlExtensions: expected one SEQUENCE");
    const crlNumber = parseCrlExtensions(r, extensions);
    return new RevocationList({
      der,
      fingerprint: createHash("sha256").update(der).digest("hex"),
      tbs: tbsNode.raw,
      signatureAlgorithm: algorithmOid(r, sigAlgNode, "signatureAlgorithm"),
      signature: r.bitString(sigNode, "signatureValue").bytes,
      issuerDer: issuer.raw,
      thisUpdate: r.time(thisUpdate, "thisUpdate"),
      nextUpdate: r.time(next, "nextUpdate"),
      crlNumber,
      revokedSerials,
    });
  }
}

function parseEntry(r: DerReader, entry: DerNode): string {
  r.expectTag(entry, TAG.SEQUENCE, "revokedCertificate");
  const [serial, date, extensions, ...extra] = r.children(entry, "revokedCertificate", 4);
  if (!serial || !date || extra.length) r.fail("revokedCertificate: expected serial, date and optional extensions");
  r.time(date, "revocationDate");
  if (extensions) {
    for (const ext of r.children(extensions, "crlEntryExtensions", 16)) {
      const parts = r.children(ext, "crlEntryExtension", 3);
      if (parts.length === 3 && r.boolean(parts[1]!, "critical")) r.fail(`unsupported critical entry extension ${r.oid(parts[0]!, "extension id")}`);
    }
  }
  return toHex(r.integer(serial, "userCertificate"));
}

function parseCrlExtensions(r: DerReader, list: DerNode): bigint {
  r.expectTag(list, TAG.SEQUENCE, "crlExtensions");
  let crlNumber: bigint | undefined;
  for (const ext of r.children(list, "crlExtensions", 16)) {
    r.expectTag(ext, TAG.SEQUENCE, "crlExtension");
    const parts = r.children(ext, "crlExtension", 3);
    const id = r.oid(parts[0] ?? r.fail("crlExtension: missing OID"), "extension id");
    const critical = parts.length === 3 && r.boolean(parts[1]!, `extension ${id} critical`);
    const value = parts[parts.length - 1]!;
    r.expectTag(value, TAG.OCTET_STRING, `extension ${id} value`);
    if (id === OID.crlNumber) {
      if (crlNumber !== undefined) r.fail("duplicate cRLNumber");
      const n = r.integer(r.readExact(value.value, TAG.INTEGER, "cRLNumber"), "cRLNumber");
      if (n[0]! & 0x80 || n.length > 20) r.fail("cRLNumber out of range");
      crlNumber = BigInt(`0x${toHex(n)}`);
    } else if (critical) r.fail(`unsupported critical extension ${id} (delta CRLs and partitioned CRLs are not used)`);
  }
  if (crlNumber === undefined) r.fail("cRLNumber is required");
  return crlNumber;
}

/**
 * The revocation lists a receiver has installed: at most one per root of its
 * bundle, each signed by that root. Immutable; `acceptRevocations` returns a
 * new one.
 */
export class Revocations {
  static readonly NONE = new Revocations(new Map());
  readonly #byRoot: ReadonlyMap<string, RevocationList>;

  private constructor(byRoot: ReadonlyMap<string, RevocationList>) {
    this.#byRoot = byRoot;
  }

  /** The installed lists, ordered by root fingerprint. */
  get lists(): readonly RevocationList[] {
    return [...this.#byRoot.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, l]) => l);
  }

  /** Every installed list as one PEM text (Envoy's `validation_context.crl` takes exactly this). */
  get pem(): string {
    return this.lists.map((l) => l.pem).join("");
  }

  /** The list installed for the root with this fingerprint. */
  forRoot(rootFingerprint: string): RevocationList | undefined {
    return this.#byRoot.get(rootFingerprint);
  }

  /** Whether `intermediate`, issued by `root`, is listed by that root's CRL. */
  isRevoked(intermediate: Certificate, root: Certificate): boolean {
    return this.#byRoot.get(root.fingerprint)?.revokedSerials.has(intermediate.serialNumber) ?? false;
  }

  /** @internal */
  static of(byRoot: ReadonlyMap<string, RevocationList>): Revocations {
    return byRoot.size ? new Revocations(byRoot) : Revocations.NONE;
  }
}

export interface AcceptRevocationsOptions {
  /** The bundle whose roots may sign revocation lists. */
  bundle: TrustBundle;
  /** What is installed now; an offered list must be newer (higher cRLNumber) than the installed one for its root. */
  current?: Revocations;
  now?: Date;
  /**
   * Accept lists past their nextUpdate. Only for a channel that is itself
   * authoritative (SDS from the control plane, which already checked
   * freshness when the list arrived on the bus); the bus never sets it.
   */
  allowExpired?: boolean;
}

export interface AcceptedRevocations {
  readonly revocations: Revocations;
  readonly changed: boolean;
}

/**
 * Installs revocation lists (PEM text, one or more `X509 CRL` blocks) on top
 * of `current`, all or nothing. Each list must be signed by a root of
 * `bundle` (else `RevocationUnknownSignerError`), be within its
 * thisUpdate..nextUpdate window, and carry a cRLNumber above the installed
 * one for that root (else `StaleRevocationError`; the very same list again is
 * a no-op). Roots the text does not mention keep their installed list; lists
 * for roots no longer in the bundle are dropped.
 */
export function acceptRevocations(text: string, options: AcceptRevocationsOptions): AcceptedRevocations {
  const now = options.now ?? new Date();
  const current = options.current ?? Revocations.NONE;
  const blocks = text.trim() === "" ? [] : decodePem(text, { label: PEM_LABEL.crl, kind: "crl", maxBlocks: MAX_CRLS_PER_DOCUMENT });
  const next = new Map<string, RevocationList>();
  for (const root of options.bundle.certificates) {
    const installed = current.forRoot(root.fingerprint);
    if (installed) next.set(root.fingerprint, installed);
  }
  let changed = next.size !== current.lists.length;
  const offeredRoots = new Set<string>();
  for (const block of blocks) {
    const list = RevocationList.parse(block.der);
    const root = options.bundle.anchorsNamed(list.issuerDer).find((a) => isSignedBy(list, a.publicKey));
    if (!root) throw new RevocationUnknownSignerError(`revocation list ${list.fingerprint.slice(0, 16)} is not signed by a root of the ${options.bundle.trustDomain} bundle`);
    if (offeredRoots.has(root.fingerprint)) throw new MalformedInputError("revocations", `two revocation lists for root ${root.fingerprint.slice(0, 16)}`);
    offeredRoots.add(root.fingerprint);
    const installed = next.get(root.fingerprint);
    if (installed?.fingerprint === list.fingerprint) continue;
    if (installed && list.crlNumber <= installed.crlNumber) {
      throw new StaleRevocationError(`revocation list number ${list.crlNumber} of root ${root.fingerprint.slice(0, 16)} is not newer than installed ${installed.crlNumber}`);
    }
    if (!options.allowExpired && now.getTime() >= list.nextUpdate.getTime()) {
      throw new StaleRevocationError(`revocation list number ${list.crlNumber} expired at ${list.nextUpdate.toISOString()}`);
    }
    if (now.getTime() < list.thisUpdate.getTime() - CLOCK_SKEW_MS) throw new StaleRevocationError(`revocation list number ${list.crlNumber} is dated in the future (${list.thisUpdate.toISOString()})`);
    next.set(root.fingerprint, list);
    changed = true;
  }
  return { revocations: changed ? Revocations.of(next) : current, changed };
}

// ---- the bus record ----

const revocationsRecordSchema = z.strictObject({
  v: z.literal(1),
  kind: z.literal(REVOCATIONS_KIND),
  trustDomain: z.string().min(1).max(255),
  crls: z.array(z.string().min(1).max(MAX_DER_BYTES * 2)).max(MAX_CRLS_PER_DOCUMENT),
});

/** How revocations travel on the bus: the CRLs themselves carry the root's signature and version. */
export type RevocationsRecord = z.infer<typeof revocationsRecordSchema>;

export function revocationsRecord(trustDomain: string, lists: readonly RevocationList[]): string {
  return JSON.stringify({ v: 1, kind: REVOCATIONS_KIND, trustDomain, crls: lists.map((l) => l.pem) } satisfies RevocationsRecord);
}

/** Validates a bus record and installs its lists (see `acceptRevocations`); refuses another trust domain's record. */
export function acceptRevocationsRecord(text: string, options: AcceptRevocationsOptions & { allowExpired?: false }): AcceptedRevocations {
  if (text.length > MAX_PEM_CHARS) throw new MalformedInputError("revocations", `record exceeds ${MAX_PEM_CHARS} characters`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MalformedInputError("revocations", "not valid JSON", { cause: err });
  }
  const parsed = revocationsRecordSchema.safeParse(json);
  if (!parsed.success) throw new MalformedInputError("revocations", zodProblems(parsed.error.issues).map((p) => `${p.path || "(root)"}: ${p.message}`).join("; "));
  if (parsed.data.trustDomain !== options.bundle.trustDomain) throw new WrongTrustDomainError(options.bundle.trustDomain, parsed.data.trustDomain);
  return acceptRevocations(parsed.data.crls.join("\n"), options);
}
