/**
 * Inner pieces tests (and only tests) reach for: the DER codec, the leaf
 * encoder and helpers that build deliberately broken certificates.
 * Production code imports from index.ts.
 */
export * from "./index.ts";
export { DerReader, TAG, seq, tlv, oid, ia5, octets, bool, bitString, time, unsignedInteger, smallInteger, concatBytes, toHex } from "./der.ts";
export { OID, KEY_USAGE, SIGNATURE_HASH } from "./oids.ts";
export { LeafEncoder } from "./leaf.ts";
export { signForX509, signingProfile, exportSpki, keyTypeOf, generateLeafKey, type LeafKey } from "./keys.ts";
export { encodeUriNameConstraints, intermediateSubject, clusterOfIntermediate, uriHost, uriConstraintViolation } from "./cluster-scope.ts";
export { bundleSignaturePayload, JOSE_ALG } from "./bundle-signature.ts";
export { randomSerialHex, CA_BACKDATE_MS } from "./root-ca.ts";
export { isSignedBy } from "./signature.ts";
export { x509 } from "./x509.ts";
