import { X509Certificate, createHash, createPrivateKey, sign, verify, type KeyObject } from "node:crypto";
import { FedgateError, asError } from "../../common/index.ts";
import { ClusterRevokedError, parseCertificatesPem, verifyPeer, type Certificate, type Revocations, type TrustBundle } from "../../trust/index.ts";
import { canonicalJson } from "./canonical-json.ts";
import type { RecordSignature } from "./records.ts";

/** What a signature covers: the record's place on the bus as well as its content, so it cannot be replayed under another key. */
export interface SignedContent {
  bucket: string;
  key: string;
  v: number;
  kind: string;
  origin: string;
  generation: number;
  body: unknown;
}

const PAYLOAD_PREFIX = "fedgate-record\n";

function payload(content: SignedContent): Buffer {
  return Buffer.from(PAYLOAD_PREFIX + canonicalJson(content));
}

type Alg = RecordSignature["alg"];
const HASH: Record<Alg, "sha256" | "sha384"> = { ES256: "sha256", ES384: "sha384", RS256: "sha256" };

function algOf(key: KeyObject): Alg {
  if (key.asymmetricKeyType === "rsa") return "RS256";
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1") return "ES256";
    if (curve === "secp384r1") return "ES384";
  }
  throw new FedgateError("FEDGATE_EXCHANGE_UNSUPPORTED_KEY", `record signing supports ECDSA P-256/P-384 and RSA keys, not ${key.asymmetricKeyType}`);
}

/** Signs records as one cluster, with the identity the trust module issued it. */
export interface RecordSigner {
  readonly cluster: string;
  signature(content: SignedContent): RecordSignature;
}

export interface RecordSignerOptions {
  cluster: string;
  /** The signing identity's chain, leaf first (PEM). */
  chainPem: string;
  /** Its PKCS#8 private key (PEM). */
  keyPem: string;
}

export function createRecordSigner(options: RecordSignerOptions): RecordSigner {
  const key = createPrivateKey(options.keyPem);
  const alg = algOf(key);
  const chain = parseCertificatesPem(options.chainPem).map((c) => Buffer.from(c.der).toString("base64"));
  return {
    cluster: options.cluster,
    signature: (content) => ({
      alg,
      chain,
      value: sign(HASH[alg], payload(content), { key, dsaEncoding: "ieee-p1363" }).toString("base64"),
    }),
  };
}

export class RecordSignatureError extends FedgateError {
  constructor(message: string, cause?: unknown) {
    super("FEDGATE_EXCHANGE_BAD_SIGNATURE", message, { cause });
  }
}

export interface RecordVerifierOptions {
  /** The trust bundle currently installed; records are checked against it. */
  bundle: () => TrustBundle;
  revokedClusters?: () => Iterable<string>;
  /** The root-signed revocation lists currently installed; checked on every record. */
  revocations?: () => Revocations;
  now?: () => Date;
}

/** Verifies record signatures; returns the cluster whose identity signed. */
export interface RecordVerifier {
  signer(content: SignedContent, signature: RecordSignature): string;
}

interface VerifiedChain {
  bundle: TrustBundle;
  cluster: string;
  intermediate: Certificate;
  root: Certificate;
  key: KeyObject;
  notAfter: number;
}

/** Chains are verified once per bundle and cached; each record then costs one signature check. */
const MAX_CACHED_CHAINS = 1_024;

export function createRecordVerifier(options: RecordVerifierOptions): RecordVerifier {
  const now = options.now ?? (() => new Date());
  const cache = new Map<string, VerifiedChain>();
  const revoked = () => new Set(options.revokedClusters?.() ?? []);

  const verifyChain = (signature: RecordSignature): VerifiedChain => {
    const bundle = options.bundle();
    const id = createHash("sha256").update(signature.chain.join(".")).digest("base64");
    const cached = cache.get(id);
    const at = now();
    if (cached && cached.bundle === bundle && cached.notAfter > at.getTime()) return cached;
    const der = signature.chain.map((c) => Buffer.from(c, "base64"));
    const peer = verifyPeer(der, bundle, { now: at });
    const leaf = new X509Certificate(der[0] as Buffer);
    const verified = { bundle, cluster: peer.cluster, intermediate: peer.intermediate, root: peer.root, key: leaf.publicKey, notAfter: peer.notAfter.getTime() };
    if (cache.size >= MAX_CACHED_CHAINS) cache.delete(cache.keys().next().value as string);
    cache.set(id, verified);
    return verified;
  };

  return {
    signer(content, signature) {
      let chain: VerifiedChain;
      try {
        chain = verifyChain(signature);
      } catch (err) {
        throw new RecordSignatureError(`signer chain rejected: ${asError(err).message}`, err);
      }
      // Checked on every record, not cached: revocation must bite at once.
      if (revoked().has(chain.cluster)) throw new RecordSignatureError(`cluster ${chain.cluster} is revoked`);
      if (options.revocations?.().isRevoked(chain.intermediate, chain.root)) {
        throw new RecordSignatureError(`cluster ${chain.cluster} is revoked (its intermediate is on the root's revocation list)`, new ClusterRevokedError(chain.cluster));
      }
      if (algOf(chain.key) !== signature.alg) throw new RecordSignatureError(`alg ${signature.alg} does not match the signer's key`);
      const ok = verify(HASH[signature.alg], payload(content), { key: chain.key, dsaEncoding: "ieee-p1363" }, Buffer.from(signature.value, "base64"));
      if (!ok) throw new RecordSignatureError("signature does not verify");
      return chain.cluster;
    },
  };
}
