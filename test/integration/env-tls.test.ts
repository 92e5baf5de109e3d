import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connect, createServer, type Server, type TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { OpensslCa } from "../support/openssl-certs.ts";

interface Ctx {
  server?: Server;
  port: number;
  ca: OpensslCa;
  stranger: OpensslCa;
  peers: string[];
  handshakeErrors: string[];
}
const mtls = suite<Ctx>("test/env: mTLS between two Node TLS endpoints", {
  port: 0,
  ca: new OpensslCa("fedgate"),
  stranger: new OpensslCa("stranger"),
  peers: [],
  handshakeErrors: [],
});

mtls.before(async (ctx) => {
  const serverId = ctx.ca.issue("server");
  ctx.server = createServer({ ...serverId, ca: ctx.ca.ca.cert, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (socket) => {
    ctx.peers.push(String(socket.getPeerCertificate().subject.CN));
    socket.end("hello");
  });
  ctx.server.on("tlsClientError", (err: NodeJS.ErrnoException) => ctx.handshakeErrors.push(err.code ?? err.message));
  await new Promise<void>((resolve) => ctx.server?.listen(0, "127.0.0.1", resolve));
  ctx.port = (ctx.server.address() as AddressInfo).port;
});
mtls.after(async (ctx) => {
  await new Promise((resolve) => ctx.server?.close(resolve));
});

/** Connects with `identity` and resolves to what the server sent before closing; rejects on a TLS error. */
function exchange(port: number, ca: string, identity: { cert: string; key: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({ host: "127.0.0.1", port, servername: "localhost", ca, ...identity, minVersion: "TLSv1.3" });
    let data = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => (data += chunk));
    socket.on("end", () => resolve(data));
    socket.on("error", reject);
  });
}

mtls("accepts a client whose certificate chains to the trusted CA", async ({ port, ca, peers }) => {
  assert.is(await exchange(port, ca.ca.cert, ca.issue("good-client")), "hello");
  assert.equal(peers, ["good-client"]);
});

mtls("rejects a stranger whose certificate chains to another CA", async ({ port, ca, stranger, peers, handshakeErrors }) => {
  const before = peers.length;
  // In TLS 1.3 the server checks the client certificate after the client's side of the handshake is done,
  // so the client sees either an alert or an empty close; the server records why.
  const served = await exchange(port, ca.ca.cert, stranger.issue("stranger-client")).catch((err: NodeJS.ErrnoException) => `error:${err.code}`);
  assert.not.equal(served, "hello");
  assert.is(peers.length, before, "the server never handed the stranger's connection to the application");
  assert.is(handshakeErrors.length, 1, "the server saw one failed handshake");
});

mtls.run();
