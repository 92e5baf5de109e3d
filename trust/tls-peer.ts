import type { ConnectionOptions, DetailedPeerCertificate, PeerCertificate, TLSSocket, TlsOptions } from "node:tls";
import { asError } from "../common/index.ts";
import { InvalidChainError, TrustError } from "./errors.ts";
import type { IssuedLeaf } from "./leaf.ts";
import type { TrustBundle } from "./trust-bundle.ts";
import { verifyPeer, type PeerIdentity, type VerifyPeerOptions } from "./verify-peer.ts";

/**
 * Glue between fedgate identities and Node's `tls`. OpenSSL (via `ca` and
 * `rejectUnauthorized`) checks signatures, validity and the trust-domain name
 * constraint during the handshake; these helpers add fedgate's own check
 * (`verifyPeer`: cluster path scope, revocation) on both sides:
 *
 * - client: `checkServerIdentity` runs `verifyPeer`, so `tls.connect` fails
 *   with the typed error before `secureConnect`;
 * - server: call `admitTlsPeer(socket, ...)` first thing in `secureConnection`;
 *   it destroys the socket before any application byte is exchanged if the
 *   client's identity is not acceptable.
 */

/** The certificate and key a TLS endpoint presents: the leaf chain, PEM. */
export interface TlsIdentity {
  readonly chainPem: string;
  readonly privateKeyPem: string;
}

/** Picks the presentable identity out of an IssuedLeaf (which must hold its key). */
export function tlsIdentityOf(leaf: IssuedLeaf): TlsIdentity {
  if (leaf.privateKeyPem === undefined) throw new InvalidChainError("leaf was issued from a CSR; its key is held by the requester");
  return { chainPem: leaf.chainPem, privateKeyPem: leaf.privateKeyPem };
}

/** `ca` for Node's tls: every root of the bundle. */
export function bundleTlsOptions(bundle: TrustBundle): { ca: string[] } {
  return { ca: bundle.caPems() };
}

/** Options for `tls.createServer` that require and verify a client certificate against `bundle`. */
export function mtlsServerOptions(options: { identity: TlsIdentity; bundle: TrustBundle }): TlsOptions {
  return {
    key: options.identity.privateKeyPem,
    cert: options.identity.chainPem,
    ...bundleTlsOptions(options.bundle),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
  };
}

/** Options for `tls.connect` that present `identity` and accept only servers `verifyPeer` accepts. */
export function mtlsClientOptions(options: { identity: TlsIdentity; bundle: TrustBundle; verify?: Omit<VerifyPeerOptions, "now"> & { now?: () => Date } }): ConnectionOptions {
  return {
    key: options.identity.privateKeyPem,
    cert: options.identity.chainPem,
    ...bundleTlsOptions(options.bundle),
    rejectUnauthorized: true,
    minVersion: "TLSv1.2",
    checkServerIdentity: serverIdentityChecker(options.bundle, options.verify),
  };
}

/** A `checkServerIdentity` hook: returns the typed verification error, or undefined to accept. */
export function serverIdentityChecker(
  bundle: TrustBundle,
  options: Omit<VerifyPeerOptions, "now"> & { now?: () => Date } = {},
): (hostname: string, cert: PeerCertificate) => Error | undefined {
  return (_hostname, cert) => {
    try {
      verifyPeer(chainFromPeerCertificate(cert), bundle, { ...options, now: options.now?.() ?? new Date() });
      return undefined;
    } catch (err) {
      return err instanceof TrustError ? err : asError(err);
    }
  };
}

/** The DER chain of a peer certificate from `getPeerCertificate(true)`, leaf first. */
export function chainFromPeerCertificate(cert: PeerCertificate | DetailedPeerCertificate): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  let current: PeerCertificate | undefined = cert;
  while (current?.raw && !seen.has(current.fingerprint256) && out.length < 16) {
    seen.add(current.fingerprint256);
    out.push(new Uint8Array(current.raw));
    const next: DetailedPeerCertificate | undefined = (current as DetailedPeerCertificate).issuerCertificate;
    current = next;
  }
  return out;
}

/** Verifies the peer of an established TLS socket; throws the typed error. */
export function verifyTlsPeer(socket: TLSSocket, bundle: TrustBundle, options: VerifyPeerOptions = {}): PeerIdentity {
  const cert = socket.getPeerCertificate(true);
  if (!cert || !cert.raw) throw new InvalidChainError("peer presented no certificate");
  return verifyPeer(chainFromPeerCertificate(cert), bundle, options);
}

export type AdmitResult = { readonly ok: true; readonly identity: PeerIdentity } | { readonly ok: false; readonly error: Error };

/**
 * For a server's `secureConnection` handler: verifies the client and, if it is
 * not acceptable, destroys the socket at once (no application data has been
 * read or written yet) and returns the reason.
 */
export function admitTlsPeer(socket: TLSSocket, bundle: TrustBundle, options: VerifyPeerOptions = {}): AdmitResult {
  try {
    return { ok: true, identity: verifyTlsPeer(socket, bundle, options) };
  } catch (err) {
    socket.destroy();
    return { ok: false, error: err instanceof TrustError ? err : asError(err) };
  }
}
