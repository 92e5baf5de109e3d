import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { MalformedInputError, TrustOptionsError } from "./errors.ts";
import { zodProblems } from "./options.ts";
import { MAX_PEM_CHARS } from "./pem.ts";

/**
 * Where CA material lives at rest: a directory of PEM files, or a Kubernetes
 * Secret object (a plain JSON shape; applying it is the caller's business).
 * Both hold the same three PEM documents, under the same names.
 */

/** The certificate (PEM). */
export const CERT_FILE = "tls.crt";
/** The PKCS#8 private key (PEM); written with mode 0600. */
export const KEY_FILE = "tls.key";
/** The issuer's certificate (PEM), for intermediates only. */
export const ISSUER_FILE = "ca.crt";

export const LABEL_TRUST_ROLE = "fedgate.io/trust-role";
export const ANNOTATION_TRUST_DOMAIN = "fedgate.io/trust-domain";
export const ANNOTATION_CLUSTER = "fedgate.io/cluster";

export type CaRole = "root-ca" | "intermediate-ca";

export interface CaMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly issuerPem?: string;
}

/** The subset of a core/v1 Secret fedgate writes and reads. */
export interface KubernetesSecret {
  apiVersion: "v1";
  kind: "Secret";
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  type: "kubernetes.io/tls" | "Opaque";
  /** base64 of each file's bytes, as the API server stores them. */
  data: Record<string, string>;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const SecretRefSchema = z.object({
  name: z.string().max(253).regex(DNS_SUBDOMAIN, "must be a DNS subdomain"),
  namespace: z.string().max(63).regex(DNS_SUBDOMAIN, "must be a DNS label").optional(),
});

const SecretSchema = z.object({
  apiVersion: z.literal("v1"),
  kind: z.literal("Secret"),
  metadata: z.looseObject({ name: z.string().min(1) }),
  type: z.enum(["kubernetes.io/tls", "Opaque"]),
  data: z.record(z.string(), z.string().max(MAX_PEM_CHARS * 2).regex(BASE64, "must be base64")),
});

export function caMaterialToSecret(
  material: CaMaterial,
  ref: { name: string; namespace?: string; role: CaRole; trustDomain: string; cluster?: string },
): KubernetesSecret {
  const parsed = SecretRefSchema.safeParse({ name: ref.name, namespace: ref.namespace });
  if (!parsed.success) throw new TrustOptionsError("secret reference", zodProblems(parsed.error.issues));
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  const data: Record<string, string> = { [CERT_FILE]: b64(material.certPem), [KEY_FILE]: b64(material.keyPem) };
  if (material.issuerPem !== undefined) data[ISSUER_FILE] = b64(material.issuerPem);
  const annotations: Record<string, string> = { [ANNOTATION_TRUST_DOMAIN]: ref.trustDomain };
  if (ref.cluster !== undefined) annotations[ANNOTATION_CLUSTER] = ref.cluster;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: ref.name,
      ...(ref.namespace === undefined ? {} : { namespace: ref.namespace }),
      labels: { [LABEL_TRUST_ROLE]: ref.role },
      annotations,
    },
    type: "kubernetes.io/tls",
    data,
  };
}

/** Reads CA material back from a Secret object; any deviation is a MalformedInputError naming every problem. */
export function caMaterialFromSecret(secret: unknown, expectIssuer: boolean): CaMaterial {
  const parsed = SecretSchema.safeParse(secret);
  if (!parsed.success) {
    throw new MalformedInputError("secret", zodProblems(parsed.error.issues).map((p) => `${p.path}: ${p.message}`).join("; "));
  }
  const data = parsed.data.data;
  const text = (key: string): string => {
    const v = data[key];
    if (v === undefined) throw new MalformedInputError("secret", `data.${key} is missing`);
    return Buffer.from(v, "base64").toString("utf8");
  };
  const certPem = text(CERT_FILE);
  const keyPem = text(KEY_FILE);
  if (!expectIssuer) return { certPem, keyPem };
  return { certPem, keyPem, issuerPem: text(ISSUER_FILE) };
}

export async function writeCaFiles(dir: string, material: CaMaterial): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, CERT_FILE), material.certPem, { mode: 0o644 });
  await writeFile(join(dir, KEY_FILE), material.keyPem, { mode: 0o600 });
  if (material.issuerPem !== undefined) await writeFile(join(dir, ISSUER_FILE), material.issuerPem, { mode: 0o644 });
}

export async function readCaFiles(dir: string, expectIssuer: boolean): Promise<CaMaterial> {
  const read = async (name: string): Promise<string> => {
    try {
      const text = await readFile(join(dir, name), "utf8");
      if (text.length > MAX_PEM_CHARS) throw new MalformedInputError("files", `${name} exceeds ${MAX_PEM_CHARS} characters`);
      return text;
    } catch (err) {
      if (err instanceof MalformedInputError) throw err;
      throw new MalformedInputError("files", `cannot read ${name} in ${dir}`, { cause: err });
    }
  };
  const certPem = await read(CERT_FILE);
  const keyPem = await read(KEY_FILE);
  if (!expectIssuer) return { certPem, keyPem };
  return { certPem, keyPem, issuerPem: await read(ISSUER_FILE) };
}
