import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { XdsServer } from "../../gateway/index.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { startEchoServer, type EchoServer } from "../support/xds-echo.ts";
import { bootstrapFor, echoSnapshot, lastAllFrom, spawnXdsClient, type XdsClientProcess } from "../support/xds-harness.ts";

const pki = await createClusterSetPki(["a", "b"]);
const gatewayLeaf = await pki.identity("a").intermediate.issueLeaf({});
const TLS = { trustDomain: pki.trustDomain, gatewayCertChainPem: gatewayLeaf.chainPem, gatewayKeyPem: gatewayLeaf.privateKeyPem ?? "", trustBundlePems: pki.bundle.caPems() };

interface Ctx {
  server?: XdsServer;
  echoes: EchoServer[];
  client?: XdsClientProcess;
  dir?: string;
}

const failover = suite<Ctx>("grpc-js-xds client: locality failover through fedgate's ADS server", { echoes: [] });

failover.after.each(async (ctx) => {
  await ctx.client?.stop();
  await ctx.server?.close();
  for (const e of ctx.echoes) await e.close();
  ctx.echoes = [];
  if (ctx.dir) await rm(ctx.dir, { recursive: true, force: true });
});

failover("uses the local locality, fails over when local endpoints are withdrawn, and comes back when they return", async (ctx) => {
  const local = await startEchoServer("a");
  const remote = await startEchoServer("b");
  ctx.echoes.push(local, remote);
  const server = (ctx.server = await XdsServer.start({}));
  server.setSnapshot(echoSnapshot({ localPort: local.port, remotePort: remote.port, tls: TLS }));
  server.flush();
  const client = (ctx.client = spawnXdsClient({ bootstrap: bootstrapFor(server.address), target: "echo", mode: "insecure" }));

  await client.waitFor("the local locality to answer", (r) => lastAllFrom(r, "a", 20));
  assert.ok(client.results.every((r) => !r.ok || r.server === "a"), "the remote locality is not used while local endpoints exist");

  const beforeFailover = client.results.length;
  server.setSnapshot(echoSnapshot({ localPort: undefined, remotePort: remote.port, tls: TLS }));
  await client.waitFor("failover to the other locality", (r) => lastAllFrom(r, "b", 20));

  const beforeRestore = client.results.length;
  server.setSnapshot(echoSnapshot({ localPort: local.port, remotePort: remote.port, tls: TLS }));
  await client.waitFor("the local locality to come back", (r) => lastAllFrom(r, "a", 20));

  const failed = client.results.filter((r) => !r.ok);
  assert.equal(failed, [], "no RPC failed across failover and restore");
  assert.ok(client.results.slice(beforeFailover, beforeRestore).some((r) => r.server === "b"));
  const nodes = server.status().nodes;
  assert.is(nodes.length, 1);
  assert.is(nodes[0]?.flavour, "proxyless");
  assert.is(nodes[0]?.types.endpoint?.nacks, 0);
  assert.is(nodes[0]?.types.endpoint?.pending, false, "the last EDS push was ACKed");
});

failover("secures the same path with mTLS from trust/ identities via grpc-js-xds certificate providers (gRFC A29)", async (ctx) => {
  const dir = (ctx.dir = await mkdtemp(path.join(tmpdir(), "fedgate-xds-mtls-")));
  const rootPem = pki.bundle.toPem();
  const backendA = await pki.identity("a").intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/a/ns/demo/sa/echo` });
  const gatewayB = await pki.identity("b").intermediate.issueLeaf({});
  const client = await pki.identity("a").intermediate.issueLeaf({ spiffeId: `spiffe://${pki.trustDomain}/cluster/a/ns/demo/sa/client` });
  const files = { cert: path.join(dir, "client.pem"), key: path.join(dir, "client.key"), ca: path.join(dir, "ca.pem") };
  await writeFile(files.cert, client.chainPem);
  await writeFile(files.key, client.privateKeyPem ?? "");
  await writeFile(files.ca, rootPem);
  const local = await startEchoServer("a", { rootPem, chainPem: backendA.chainPem, keyPem: backendA.privateKeyPem ?? "" });
  const remote = await startEchoServer("b", { rootPem, chainPem: gatewayB.chainPem, keyPem: gatewayB.privateKeyPem ?? "" });
  ctx.echoes.push(local, remote);
  const server = (ctx.server = await XdsServer.start({}));
  server.setSnapshot(echoSnapshot({ localPort: local.port, remotePort: remote.port, tls: TLS, proxylessMtls: true }));
  server.flush();
  const bootstrap = bootstrapFor(server.address, {
    certificate_providers: {
      "fedgate-identity": { plugin_name: "file_watcher", config: { certificate_file: files.cert, private_key_file: files.key, refresh_interval: "1s" } },
      "fedgate-ca": { plugin_name: "file_watcher", config: { ca_certificate_file: files.ca, refresh_interval: "1s" } },
    },
  });
  const proc = (ctx.client = spawnXdsClient({ bootstrap, target: "echo", mode: "xds-creds" }));

  await proc.waitFor("an mTLS call to the local locality", (r) => lastAllFrom(r, "a", 10));
  const last = proc.results.at(-1);
  assert.is(last?.peer, `URI:${client.spiffeId}`, "the backend saw the client's trust/ identity");

  server.setSnapshot(echoSnapshot({ localPort: undefined, remotePort: remote.port, tls: TLS, proxylessMtls: true }));
  await proc.waitFor("mTLS failover to cluster b's gateway", (r) => lastAllFrom(r, "b", 10));
  assert.is(proc.results.at(-1)?.peer, `URI:${client.spiffeId}`);
  assert.equal(proc.results.filter((r) => !r.ok), [], "no failed RPCs under mTLS");
});

failover.run();
