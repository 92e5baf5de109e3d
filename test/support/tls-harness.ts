/**
 * Real Node mTLS endpoints wired the way the gateway wires them, plus an
 * `openssl` runner. Every server started here must be closed by the test.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import {
  admitTlsPeer,
  mtlsClientOptions,
  mtlsServerOptions,
  verifyTlsPeer,
  type AdmitResult,
  type PeerIdentity,
  type TlsIdentity,
  type TrustBundle,
  type VerifyPeerOptions,
} from "../../trust/index.ts";

export const OPENSSL = "/usr/bin/openssl";
const HANDSHAKE_TIMEOUT_MS = 5_000;

export interface MtlsServer {
  readonly port: number;
  /** Every client the server's verifier looked at, in order. */
  readonly admissions: AdmitResult[];
  /** Handshakes OpenSSL itself rejected (before fedgate's verifier ran). */
  readonly tlsErrors: Error[];
  /** Swaps identity and/or bundle for new connections (what a gateway does on renewal or bundle update). */
  update(next: { identity?: TlsIdentity; bundle?: TrustBundle }): void;
  close(): Promise<void>;
}

/**
 * A gateway-style mTLS server: OpenSSL checks the client chain against the
 * bundle, then `admitTlsPeer` runs fedgate's verifier before any byte is
 * read. Admitted clients get `hello <their SPIFFE ID> from <server name>`.
 */
export async function startMtlsServer(options: {
  name: string;
  identity: TlsIdentity;
  bundle: TrustBundle;
  verify?: Omit<VerifyPeerOptions, "now"> & { now?: () => Date };
}): Promise<MtlsServer> {
  let identity = options.identity;
  let bundle = options.bundle;
  const admissions: AdmitResult[] = [];
  const tlsErrors: Error[] = [];
  const server = tls.createServer(mtlsServerOptions({ identity, bundle }));
  server.on("secureConnection", (socket) => {
    socket.on("error", (err: Error) => tlsErrors.push(err));
    const result = admitTlsPeer(socket, bundle, { ...options.verify, now: options.verify?.now?.() ?? new Date() });
    admissions.push(result);
    if (!result.ok) return;
    socket.once("data", () => socket.end(`hello ${result.identity.spiffeId} from ${options.name}`));
  });
  server.on("tlsClientError", (err) => tlsErrors.push(err));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    admissions,
    tlsErrors,
    update(next) {
      identity = next.identity ?? identity;
      bundle = next.bundle ?? bundle;
      server.setSecureContext(mtlsServerOptions({ identity, bundle }));
    },
    close: () => new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve()))),
  };
}

export interface MtlsOutcome {
  /** The handshake completed on the client side (the server may still reject afterwards). */
  readonly secureConnected: boolean;
  /** Application bytes received from the server; empty when rejected. */
  readonly reply: string;
  readonly error: Error | undefined;
  /** What the client's verifier made of the server, when it accepted it. */
  readonly serverIdentity: PeerIdentity | undefined;
}

/** Connects with `identity`, verifying the server with `verifyPeer` in `checkServerIdentity`, sends a ping and collects the reply. */
export function mtlsRequest(options: {
  port: number;
  identity: TlsIdentity;
  bundle: TrustBundle;
  verify?: Omit<VerifyPeerOptions, "now"> & { now?: () => Date };
}): Promise<MtlsOutcome> {
  return new Promise((resolve) => {
    let reply = "";
    let error: Error | undefined;
    let secureConnected = false;
    let serverIdentity: PeerIdentity | undefined;
    let settled = false;
    const socket = tls.connect({ host: "127.0.0.1", port: options.port, ...mtlsClientOptions(options) });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ secureConnected, reply, error, serverIdentity });
    };
    const timer = setTimeout(() => {
      error = new Error("mTLS request timed out");
      socket.destroy();
      finish();
    }, HANDSHAKE_TIMEOUT_MS);
    socket.on("secureConnect", () => {
      secureConnected = true;
      try {
        serverIdentity = verifyTlsPeer(socket, options.bundle, { ...options.verify, now: options.verify?.now?.() ?? new Date() });
      } catch (err) {
        error = err instanceof Error ? err : new Error(String(err));
      }
      socket.write("ping");
    });
    socket.on("data", (d: Buffer) => (reply += d.toString("utf8")));
    socket.on("error", (err: Error) => (error ??= err));
    socket.on("close", finish);
  });
}

export interface OpensslResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function openssl(args: readonly string[]): Promise<OpensslResult> {
  return new Promise((resolve) => {
    execFile(OPENSSL, args, { timeout: 10_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A temporary directory with `files` written into it; call `remove()` when done. */
export async function tempFiles(files: Record<string, string>): Promise<{ dir: string; path: (name: string) => string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "fedgate-trust-"));
  await Promise.all(Object.entries(files).map(([name, text]) => writeFile(join(dir, name), text)));
  return { dir, path: (name) => join(dir, name), remove: () => rm(dir, { recursive: true, force: true }) };
}
