import { createSecureContext, type PeerCertificate, type SecureContext } from "node:tls";
import { asError, type Problem } from "../../common/index.ts";
import { acceptRevocations, mtlsClientOptions, mtlsServerOptions, Revocations, TrustBundle, type TlsIdentity } from "../../trust/index.ts";
import type { SdsTls, SecretSpec } from "./resources.ts";

interface ClientTls {
  readonly context: SecureContext;
  readonly checkServerIdentity: (hostname: string, cert: PeerCertificate) => Error | undefined;
}

/**
 * SDS secrets as the gateway uses them: identities, trust bundles with their
 * root-signed revocation lists (built and validated by trust/: a list not
 * signed by a root of its bundle makes the update a NACK), and TLS contexts
 * cached per secret generation. A new
 * secret only affects connections made after it arrived; open connections keep
 * the context they were made with.
 */
export class SecretStore {
  private identities = new Map<string, TlsIdentity>();
  private bundles = new Map<string, TrustBundle>();
  private revocationLists = new Map<string, Revocations>();
  private generation = 0;
  private readonly clientContexts = new Map<string, ClientTls>();
  private readonly serverContexts = new Map<string, SecureContext>();

  /** Validates a full secret set; returns problems (nothing is installed) or the prepared set. */
  prepare(specs: readonly SecretSpec[]): { problems: Problem[]; install: () => void } {
    const problems: Problem[] = [];
    const identities = new Map<string, TlsIdentity>();
    const bundles = new Map<string, TrustBundle>();
    const revocationLists = new Map<string, Revocations>();
    for (const s of specs) {
      try {
        if (s.kind === "certificate") {
          createSecureContext({ key: s.keyPem, cert: s.chainPem });
          identities.set(s.name, { chainPem: s.chainPem, privateKeyPem: s.keyPem });
        } else {
          const bundle = TrustBundle.fromPem(s.caPem, { trustDomain: s.trustDomain, sequence: this.generation + 1 });
          bundles.set(s.name, bundle);
          // The control plane checked freshness when the list reached it over the bus; here a list only has to be the roots' own.
          revocationLists.set(s.name, acceptRevocations(s.crlPem, { bundle, allowExpired: true }).revocations);
        }
      } catch (err) {
        problems.push({ path: `secret ${s.name}`, message: asError(err).message });
      }
    }
    return {
      problems,
      install: () => {
        this.identities = identities;
        this.bundles = bundles;
        this.revocationLists = revocationLists;
        this.generation += 1;
        this.clientContexts.clear();
        this.serverContexts.clear();
      },
    };
  }

  has(name: string): boolean {
    return this.identities.has(name) || this.bundles.has(name);
  }

  bundle(name: string): TrustBundle | undefined {
    return this.bundles.get(name);
  }

  /** The revocation lists that came with bundle secret `name`. */
  revocations(name: string): Revocations {
    return this.revocationLists.get(name) ?? Revocations.NONE;
  }

  /** The context a TLS origination presents and verifies with; undefined until both secrets arrived. */
  client(tls: SdsTls): ClientTls | undefined {
    const key = `${tls.certSecret}\n${tls.bundleSecret}`;
    let cached = this.clientContexts.get(key);
    if (cached) return cached;
    const identity = this.identities.get(tls.certSecret);
    const bundle = this.bundles.get(tls.bundleSecret);
    if (!identity || !bundle) return undefined;
    const options = mtlsClientOptions({ identity, bundle, verify: { revocations: this.revocations(tls.bundleSecret) } });
    cached = { context: createSecureContext(options), checkServerIdentity: options.checkServerIdentity ?? (() => undefined) };
    this.clientContexts.set(key, cached);
    return cached;
  }

  /** The context a TLS termination presents (client verification is done by trust/'s verifyPeer after the handshake). */
  server(tls: SdsTls): SecureContext | undefined {
    const key = `${tls.certSecret}\n${tls.bundleSecret}`;
    let cached = this.serverContexts.get(key);
    if (cached) return cached;
    const identity = this.identities.get(tls.certSecret);
    const bundle = this.bundles.get(tls.bundleSecret);
    if (!identity || !bundle) return undefined;
    cached = createSecureContext(mtlsServerOptions({ identity, bundle }));
    this.serverContexts.set(key, cached);
    return cached;
  }
}
