import { connect as netConnect, createServer } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { createLogger, type Logger } from "../../common/index.ts";
import { ProtoRegistry } from "../../gateway/index.ts";
import { parseCertificatesPem } from "../../trust/index.ts";
import { createClusterSetPki, type ClusterSetPki } from "../support/clusterset-pki.ts";
import { forgeLeaf } from "../support/tls-fixtures.ts";
import { EXPORT_SNI, exchange, Topology, waitFor } from "../support/gateway-harness.ts";
import { prng } from "../support/prng.ts";

const pki = await createClusterSetPki(["a", "b", "c"]);
/** Another trust domain, and the same trust domain under a root nobody trusts. */
const otherDomain = await createClusterSetPki(["a"], "other.test");
const rogueRoot = await createClusterSetPki(["a"]);
const registry = ProtoRegistry.load();
const HANDSHAKE_TIMEOUT_MS = 1_000;

interface Ctx {
  topology?: Topology;
  /** Every gateway's warn and error lines, for the one-line-per-refusal check. */
  lines: string[];
  logger: Logger;
}

async function clientLeaf(from: ClusterSetPki, cluster: string) {
  const leaf = await from.identity(cluster).intermediate.issueLeaf({ spiffeId: `spiffe://${from.trustDomain}/cluster/${cluster}/gateway` });
  return { cert: leaf.chainPem, key: leaf.privateKeyPem ?? "" };
}

type Outcome = { kind: "served"; id: string } | { kind: "refused"; stage: "handshake" | "after-handshake" };

/** A TLS client straight at B's export listener: was it served, or refused (and when)? */
function tlsAttempt(port: number, options: { servername: string; identity?: { cert: string; key: string }; fingerprint?: (fp: string) => void }): Promise<Outcome> {
  return new Promise((resolve) => {
    let handshaken = false;
    let data = "";
    const socket = tlsConnect({ host: "127.0.0.1", port, servername: options.servername, ca: pki.bundle.caPems(), ...options.identity, checkServerIdentity: () => undefined });
    socket.on("secureConnect", () => {
      handshaken = true;
      options.fingerprint?.(socket.getPeerCertificate().fingerprint256);
      socket.write("ping");
    });
    socket.on("data", (chunk: Buffer) => {
      data += chunk.toString();
      if (data.endsWith("ping")) {
        socket.end();
        resolve({ kind: "served", id: data.slice(0, data.indexOf("\n")) });
      }
    });
    socket.on("error", () => socket.destroy());
    socket.on("close", () => resolve({ kind: "refused", stage: handshaken ? "after-handshake" : "handshake" }));
  });
}

const sec = suite<Ctx>("gateway export listener refuses bad clients and keeps serving", {} as Ctx);

sec.before.each((ctx) => {
  const lines: string[] = [];
  ctx.lines = lines;
  ctx.logger = createLogger({ level: "warn", write: (line) => lines.push(line) });
});

sec.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

function exportPort(t: Topology): number {
  return t.exportPorts.get("b") ?? 0;
}

/** Every downstream refusal B counted was logged exactly once, with its reason. */
function assertOneLinePerRefusal(t: Topology, lines: readonly string[]): void {
  const counted = new Map<string, number>();
  for (const line of t.get("b").gateway.metrics.registry.render().split("\n")) {
    if (!line.startsWith("fedgate_gateway_tls_handshake_failures_total{") || !line.includes('side="downstream"')) continue;
    const reason = /reason="([^"]*)"/.exec(line)?.[1] ?? "";
    counted.set(reason, (counted.get(reason) ?? 0) + Number(line.split(" ").at(-1)));
  }
  const logged = new Map<string, number>();
  for (const line of lines) {
    if (!line.includes('"refused a TLS client"') || !line.includes('"cluster":"b"')) continue;
    const reason = /"reason":"([^"]*)"/.exec(line)?.[1] ?? "";
    logged.set(reason, (logged.get(reason) ?? 0) + 1);
  }
  assert.equal(Object.fromEntries([...logged].sort()), Object.fromEntries([...counted].filter(([, n]) => n > 0).sort()), "one log line per counted refusal, by reason");
}

function refusals(t: Topology, reason: string): number {
  return t.metric("b", "fedgate_gateway_tls_handshake_failures_total", { side: "downstream", reason });
}

sec("a trusted peer with the export's SNI is served; an unknown SNI is refused in the handshake and counted", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, logger: ctx.logger }));
  const good = await clientLeaf(pki, "a");
  assert.equal(await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: good }), { kind: "served", id: "b-1" });
  const unknown = await tlsAttempt(exportPort(t), { servername: "outbound_.9999_._.secret.kube-system.svc.clusterset.local", identity: good });
  assert.equal(unknown, { kind: "refused", stage: "handshake" });
  assert.is(refusals(t, "unknown_sni"), 1);
  assert.is(t.metric("b", "fedgate_gateway_upstream_connections_total", { cluster: "inbound|9000||echo.demo.svc.cluster.local" }), 1, "only the good client reached a backend");
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("a client certificate from another trust domain, an untrusted root, or none at all is refused with a typed reason", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, logger: ctx.logger }));
  const cases = [
    { name: "other trust domain", identity: await clientLeaf(otherDomain, "a"), reason: "fedgate_trust_wrong_trust_domain" },
    { name: "untrusted root", identity: await clientLeaf(rogueRoot, "a"), reason: "fedgate_trust_unknown_root" },
    { name: "no certificate", identity: undefined, reason: "fedgate_trust_invalid_chain" },
  ];
  for (const c of cases) {
    const outcome = await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: c.identity });
    assert.is(outcome.kind, "refused", c.name);
    assert.is(refusals(t, c.reason), 1, `${c.name} counted as ${c.reason}`);
  }
  assert.is(await exchange(t.importPort("a")), "b-1", "the trusted peer gateway is still served");
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("only the export's consumers may call it: another cluster of the trust domain is refused", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, consumers: ["a"], logger: ctx.logger }));
  const outcome = await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "c") });
  assert.equal(outcome, { kind: "refused", stage: "after-handshake" });
  assert.is(refusals(t, "unauthorized_cluster"), 1);
  assert.equal(await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "a") }), { kind: "served", id: "b-1" });
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("garbage bytes and a stalled ClientHello are cut off while other clients keep being served", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, logger: ctx.logger }));
  const closed = (write: Buffer | undefined) =>
    new Promise<void>((resolve) => {
      const s = netConnect({ host: "127.0.0.1", port: exportPort(t) }, () => {
        if (write) s.write(write);
      });
      s.on("error", () => s.destroy());
      s.on("close", () => resolve());
      s.resume();
    });
  const garbage = closed(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  // The first bytes of a TLS record header announcing a ClientHello, then nothing.
  const stalled = closed(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
  const silent = closed(undefined);
  const served: string[] = [];
  for (let i = 0; i < 5; i++) served.push(await exchange(t.importPort("a")));
  assert.equal(served, ["b-1", "b-1", "b-1", "b-1", "b-1"]);
  await Promise.all([garbage, stalled, silent]);
  await waitFor("timeouts counted", () => refusals(t, "handshake_timeout") === 2);
  const text = t.get("b").gateway.metrics.registry.render();
  const garbageReasons = text.split("\n").filter((l) => l.startsWith("fedgate_gateway_tls_handshake_failures_total") && !/handshake_timeout|client_disconnected/.test(l));
  assert.is(garbageReasons.length, 1, `one garbage reason line: ${garbageReasons.join(" | ")}`);
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("SDS rotation: new connections get the new certificate, open connections carry on", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, logger: ctx.logger }));
  const open = netConnect({ host: "127.0.0.1", port: t.importPort("a") });
  let received = "";
  open.on("data", (c: Buffer) => (received += c.toString()));
  open.write("before");
  await waitFor("open connection echoes", () => received === "b-1\nbefore");
  const before = t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
  const rotated = await pki.identity("b").intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/b/gateway` });
  t.get("b").leafPem = { chainPem: rotated.chainPem, keyPem: rotated.privateKeyPem ?? "" };
  t.push("b");
  await waitFor("B installed the rotated secret", () => t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > before);
  let presented = "";
  const outcome = await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "a"), fingerprint: (fp) => (presented = fp) });
  assert.equal(outcome, { kind: "served", id: "b-1" });
  const expected = parseCertificatesPem(rotated.chainPem)[0]!.fingerprint;
  assert.is(presented.replace(/:/g, "").toLowerCase(), expected.replace(/:/g, "").toLowerCase(), "the new certificate is presented");
  assert.is(await exchange(t.importPort("a")), "b-1", "A's gateway accepts the rotated peer");
  open.write("after");
  await waitFor("the connection opened before the rotation still echoes", () => received === "b-1\nbeforeafter");
  open.destroy();
});

sec("an expired client certificate is refused with fedgate_trust_expired while others are served", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, logger: ctx.logger }));
  const now = Date.now();
  const expired = await forgeLeaf({ intermediate: pki.identity("a").intermediate, spiffeId: `spiffe://${pki.trustDomain}/cluster/a/gateway`, notBefore: new Date(now - 7_200_000), notAfter: new Date(now - 3_600_000) });
  const outcome = await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: { cert: expired.chainPem, key: expired.privateKeyPem } });
  assert.is(outcome.kind, "refused");
  assert.is(refusals(t, "fedgate_trust_expired"), 1);
  assert.is(await exchange(t.importPort("a")), "b-1");
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("a revoked cluster: refused at the handshake (reason revoked, one log line), its open connections cut, other clusters served", async (ctx) => {
  const lines = ctx.lines;
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1, c: 0 }, logger: ctx.logger }));
  // A long-lived connection from A, admitted before the revocation.
  const open = netConnect({ host: "127.0.0.1", port: t.importPort("a") });
  let received = "";
  let openClosed = false;
  open.on("data", (c: Buffer) => (received += c.toString()));
  open.on("error", () => open.destroy());
  open.on("close", () => (openClosed = true));
  open.write("before");
  await waitFor("A's open connection echoes", () => received === "b-1\nbefore");
  assert.is(await exchange(t.importPort("c")), "b-1");

  // The root revokes A's intermediate; B's control plane hands the list to B's gateway in its bundle secret.
  const crl = await pki.root.issueRevocationList({ intermediates: [pki.identity("a").intermediate.certificate], crlNumber: 1 });
  const acks = t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
  t.get("b").revocationsPem = crl.pem;
  t.push("b");
  await waitFor("B installed the revocation list", () => t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
  await waitFor("A's open connection is cut", () => openClosed);
  assert.is(t.metric("b", "fedgate_gateway_downstream_refused_total", { listener: "fedgate-export-15443", reason: "revoked" }), 1, "the cut is counted");

  // New handshakes from A (its gateway, or anything holding an A identity) are refused; C is served.
  const direct = await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "a") });
  assert.equal(direct, { kind: "refused", stage: "after-handshake" });
  let viaGateway: unknown;
  await exchange(t.importPort("a"), "ping", 5_000).catch((err: unknown) => (viaGateway = err));
  assert.ok(viaGateway, "A's gateway cannot reach B any more");
  assert.is(await exchange(t.importPort("c")), "b-1", "C is still served");
  assert.ok(refusals(t, "revoked") >= 2, `refusals counted as revoked: ${refusals(t, "revoked")}`);
  const refusedLines = lines.filter((l) => l.includes('"refused a TLS client"') && l.includes('"reason":"revoked"') && l.includes('"cluster":"b"'));
  assert.is(refusedLines.length, refusals(t, "revoked"), "one log line per refusal");
  assert.ok(refusedLines.every((l) => l.includes("FEDGATE_TRUST_CLUSTER_REVOKED")), refusedLines[0]);
  assert.is(lines.filter((l) => l.includes("cut a connection of a revoked cluster")).length, 1);

  // A forged list (signed by another root) is NACKed whole: B keeps the list it had, A stays refused.
  const nacks = t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "nack" });
  const forged = await rogueRoot.root.issueRevocationList({ intermediates: [], crlNumber: 2 });
  t.get("b").revocationsPem = forged.pem;
  t.push("b");
  await waitFor("B NACKs the forged list", () => t.metric("b", "fedgate_gateway_xds_updates_total", { type: "secret", result: "nack" }) > nacks);
  assert.is((await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "a") })).kind, "refused");
  assert.is(await exchange(t.importPort("c")), "b-1");
  assertOneLinePerRefusal(t, ctx.lines);
});

sec("a gateway refuses to originate TLS to a revoked peer (upstream reason revoked)", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, logger: ctx.logger }));
  assert.is(await exchange(t.importPort("a")), "b-1");
  const crl = await pki.root.issueRevocationList({ intermediates: [pki.identity("b").intermediate.certificate], crlNumber: 1 });
  const acks = t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" });
  t.get("a").revocationsPem = crl.pem;
  t.push("a");
  await waitFor("A installed the revocation list", () => t.metric("a", "fedgate_gateway_xds_updates_total", { type: "secret", result: "ack" }) > acks);
  let failed: unknown;
  await exchange(t.importPort("a"), "ping", 5_000).catch((err: unknown) => (failed = err));
  assert.ok(failed, "A does not talk to revoked B");
  assert.ok(t.metric("a", "fedgate_gateway_tls_handshake_failures_total", { side: "upstream", reason: "revoked" }) >= 1);
});

/** Captures the ClientHello a real TLS client sends for `servername`. */
async function captureClientHello(servername: string): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const hello = new Promise<Buffer>((resolve) => server.once("connection", (s) => s.once("data", (d: Buffer) => (resolve(d), s.destroy()))));
  const client = tlsConnect({ host: "127.0.0.1", port, servername });
  client.on("error", () => client.destroy());
  const bytes = await hello;
  server.close();
  return bytes;
}

/** The downstream TLS failure counters of B's gateway, by reason. */
function downstreamFailures(t: Topology): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of t.get("b").gateway.metrics.registry.render().split("\n")) {
    if (!line.startsWith("fedgate_gateway_tls_handshake_failures_total{") || !line.includes('side="downstream"')) continue;
    const reason = /reason="([^"]*)"/.exec(line)?.[1] ?? "";
    out.set(reason, (out.get(reason) ?? 0) + Number(line.split(" ").at(-1)));
  }
  return out;
}

type Mutation = "bit-flips" | "truncation" | "length-field" | "random-sni-bytes" | "unknown-sni";
const MUTATION_KINDS: readonly Mutation[] = ["bit-flips", "truncation", "length-field", "random-sni-bytes", "unknown-sni"];

/** One seeded mutation of a real ClientHello (record header at 0, handshake header at 5, session id length at 43). */
function mutate(hello: Buffer, kind: Mutation, random: () => number): Buffer {
  const out = Buffer.from(hello);
  const byte = () => Math.floor(random() * 256);
  const sniAt = hello.indexOf(Buffer.from(EXPORT_SNI));
  switch (kind) {
    case "bit-flips":
      for (let k = 0; k < 1 + Math.floor(random() * 8); k++) {
        const at = Math.floor(random() * out.length);
        out[at] = out[at]! ^ (1 << Math.floor(random() * 8));
      }
      return out;
    case "truncation":
      return out.subarray(0, 1 + Math.floor(random() * (out.length - 1)));
    case "length-field": {
      // Record length, handshake length, session id length, server_name list length, host name length.
      const fields = [3, 4, 6, 7, 8, 43, sniAt - 5, sniAt - 4, sniAt - 2, sniAt - 1];
      out[fields[Math.floor(random() * fields.length)]!] = byte();
      return out;
    }
    case "random-sni-bytes":
      for (let k = 0; k < EXPORT_SNI.length; k++) out[sniAt + k] = byte();
      return out;
    case "unknown-sni":
      // A well-formed hello for a name nobody exports.
      for (let k = 0; k < EXPORT_SNI.length; k++) out[sniAt + k] = 0x61 + Math.floor(random() * 26);
      return out;
  }
}

sec("fuzz: a few hundred mutated ClientHellos are each refused and counted exactly once; the gateway keeps serving", async (ctx) => {
  const t = (ctx.topology = await Topology.start({ pki, registry, exporters: ["b"], members: { a: 0, b: 1 }, handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS, logger: ctx.logger }));
  const hello = await captureClientHello(EXPORT_SNI);
  assert.ok(hello.indexOf(Buffer.from(EXPORT_SNI)) > 43, "the captured hello carries the SNI");
  const random = prng(7);
  const MUTATIONS = 300;
  const BATCH = 60;
  const before = downstreamFailures(t);
  const answers: string[] = [];
  for (let batch = 0; batch < MUTATIONS / BATCH; batch++) {
    const attempts = Array.from({ length: BATCH }, (_, k) => {
      const bytes = mutate(hello, MUTATION_KINDS[(batch * BATCH + k) % MUTATION_KINDS.length]!, random);
      return new Promise<string>((resolve) => {
        let received = "";
        const s = netConnect({ host: "127.0.0.1", port: exportPort(t) }, () => s.write(bytes));
        s.on("data", (d: Buffer) => (received += d.toString("latin1")));
        s.on("error", () => s.destroy());
        // The client never closes first: every attempt ends by the gateway's decision.
        s.on("close", () => resolve(received));
      });
    });
    assert.is(await exchange(t.importPort("a")), "b-1", `served while fuzz batch ${batch} runs`);
    answers.push(...(await Promise.all(attempts)));
  }
  assert.ok(answers.every((a) => !a.includes("b-1")), "no mutated hello reached a backend");
  const after = downstreamFailures(t);
  const delta = new Map([...after].map(([reason, n]) => [reason, n - (before.get(reason) ?? 0)]));
  // Health checks from A's gateway are bare TCP connects, counted as client_disconnected; nothing else adds to these counters.
  delta.delete("client_disconnected");
  const counted = [...delta.values()].reduce((a, b) => a + b, 0);
  assert.is(counted, MUTATIONS, `every mutated hello counted once: ${JSON.stringify(Object.fromEntries(delta))}`);
  assert.ok((delta.get("unknown_sni") ?? 0) >= MUTATIONS / MUTATION_KINDS.length, "every hello for an unexported name is unknown_sni");
  assert.ok(delta.size >= 3, `several distinct reasons: ${[...delta.keys()].join(", ")}`);
  assert.is(t.metric("b", "fedgate_gateway_upstream_connections_total", { cluster: "inbound|9000||echo.demo.svc.cluster.local" }), MUTATIONS / BATCH, "only the real clients reached a backend");
  assert.equal(await tlsAttempt(exportPort(t), { servername: EXPORT_SNI, identity: await clientLeaf(pki, "a") }), { kind: "served", id: "b-1" }, "a normal mTLS call succeeds afterwards");
  assert.is(await exchange(t.importPort("a")), "b-1", "still serving through the gateways");
  assertOneLinePerRefusal(t, ctx.lines);
});

sec.run();
