import { asError } from "../../common/index.ts";
import type { BucketNames } from "./buckets.ts";
import { RECORD_VERSION, recordEnvelope, type RecordBody, type RecordEnvelope, type RecordKind } from "./records.ts";
import type { RecordSigner, RecordVerifier } from "./record-signing.ts";

/** Why a record on the bus was not applied; each is a metric label. */
export type RejectReason = "malformed" | "unsupported-version" | "schema" | "signature" | "unauthorized" | "stale-generation";

export type DecodeResult = { ok: true; record: RecordEnvelope } | { ok: false; reason: RejectReason; detail: string };

/** Records are small; anything bigger is refused before parsing. */
export const MAX_RECORD_BYTES = 64 * 1024;

const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeRecord<K extends RecordKind>(options: {
  signer: RecordSigner;
  bucket: string;
  key: string;
  kind: K;
  generation: number;
  body: RecordBody<K>;
}): Uint8Array {
  // The bucket and key are signed but not sent: the reader knows where it found the record.
  const record = { v: RECORD_VERSION, kind: options.kind, origin: options.signer.cluster, generation: options.generation, body: options.body };
  const sig = options.signer.signature({ ...record, bucket: options.bucket, key: options.key });
  return Buffer.from(JSON.stringify({ ...record, sig }));
}

/**
 * Decodes in the order the issue demands: schema, then signature, then the
 * origin's right to write that key. Never throws.
 */
export function decodeRecord(options: { buckets: BucketNames; bucket: string; key: string; bytes: Uint8Array; verifier: RecordVerifier }): DecodeResult {
  const { bucket, key, bytes } = options;
  if (bytes.length > MAX_RECORD_BYTES) return reject("malformed", `record of ${bytes.length} bytes exceeds ${MAX_RECORD_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(decoder.decode(bytes));
  } catch (err) {
    return reject("malformed", `not UTF-8 JSON: ${asError(err).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return reject("malformed", "not a JSON object");
  const rawRecord = raw as Record<string, unknown>;
  if (rawRecord["v"] !== RECORD_VERSION) return reject("unsupported-version", `record version ${JSON.stringify(rawRecord["v"])}; this reader knows ${RECORD_VERSION}`);

  const parsed = recordEnvelope.safeParse(raw);
  if (!parsed.success) {
    return reject("schema", parsed.error.issues.map((i) => `${i.path.join(".") || "(record)"}: ${i.message}`).join("; "));
  }
  const record = parsed.data;

  let signer: string;
  try {
    // The signature covers the body as sent, including fields a newer writer added that this reader drops.
    signer = options.verifier.signer(
      { bucket, key, v: record.v, kind: record.kind, origin: record.origin, generation: record.generation, body: rawRecord["body"] },
      record.sig,
    );
  } catch (err) {
    return reject("signature", asError(err).message);
  }
  if (signer !== record.origin) return reject("unauthorized", `signed by cluster ${signer} but claims origin ${record.origin}`);
  const owner = keyOwnerProblem(options.buckets, bucket, key, record);
  if (owner) return reject("unauthorized", owner);
  return { ok: true, record };
}

/** Whether `record` may live at `bucket`/`key`: clusters write only their own keys, of the kind the key is for. */
function keyOwnerProblem(buckets: BucketNames, bucket: string, key: string, record: RecordEnvelope): string | undefined {
  const tokens = key.split(".");
  if (tokens[0] !== record.origin) return `origin ${record.origin} may not write key ${key}`;
  if (bucket === buckets.clusters) {
    if (tokens.length !== 2) return `unexpected key ${key} in ${bucket}`;
    if (tokens[1] === "info" && record.kind === "cluster") return record.body.name === record.origin ? undefined : `registration names ${record.body.name}, not ${record.origin}`;
    if (tokens[1] === "lease" && record.kind === "lease") return undefined;
    return `a ${record.kind} record may not live at ${key}`;
  }
  if (bucket === buckets.exports) {
    if (record.kind !== "export") return `a ${record.kind} record may not live in ${bucket}`;
    if (tokens.length !== 3 || tokens[1] !== record.body.namespace || tokens[2] !== record.body.name) {
      return `key ${key} does not match export ${record.body.namespace}/${record.body.name}`;
    }
    return undefined;
  }
  return `bucket ${bucket} holds no cluster records`;
}

function reject(reason: RejectReason, detail: string): DecodeResult {
  return { ok: false, reason, detail };
}

export function exportKey(cluster: string, namespace: string, name: string): string {
  return `${cluster}.${namespace}.${name}`;
}
