import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ControllerConfigError, createBusAuthority, mintClusterCredentials, parseControllerConfig, type ControllerConfigInput } from "../../federation/index.ts";
import { RootCa } from "../../trust/index.ts";

const dir = mkdtempSync(join(tmpdir(), "fedgate-controller-config-"));
const bin = new URL("../../bin/fedgate.js", import.meta.url).pathname;

async function validConfig(): Promise<ControllerConfigInput> {
  const root = await RootCa.create({ trustDomain: "fedgate.test" });
  const intermediate = await root.issueIntermediate({ cluster: "cluster-a" });
  const controller = await intermediate.issueLeaf({ spiffeId: "spiffe://fedgate.test/cluster/cluster-a/controller" });
  const gateway = await intermediate.issueLeaf({ spiffeId: "spiffe://fedgate.test/cluster/cluster-a/gateway" });
  const creds = await mintClusterCredentials(await createBusAuthority({ clusterSet: "set" }), "cluster-a");
  const files = { "bundle.pem": root.certificate.pem, "controller.pem": controller.chainPem, "controller.key": controller.privateKeyPem ?? "", "gateway.pem": gateway.chainPem, "gateway.key": gateway.privateKeyPem ?? "", "cluster.creds": creds.creds };
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return {
    cluster: "cluster-a",
    clusterSet: "set",
    nats: { servers: ["nats://127.0.0.1:4222"], credsFile: join(dir, "cluster.creds") },
    trust: {
      trustDomain: "fedgate.test",
      bundleFile: join(dir, "bundle.pem"),
      controllerCertFile: join(dir, "controller.pem"),
      controllerKeyFile: join(dir, "controller.key"),
      gatewayCertFile: join(dir, "gateway.pem"),
      gatewayKeyFile: join(dir, "gateway.key"),
    },
    xds: { port: 18_000 },
    gateway: { exportAddress: { host: "gw.a.example", port: 15443 }, importAddress: "10.0.0.10" },
  };
}

const config = suite("fedgate controller --config");
const good = await validConfig();

config("a complete file parses, with defaults and the material its paths name", async () => {
  const parsed = await parseControllerConfig(good);
  assert.is(parsed.cluster, "cluster-a");
  assert.equal(parsed.gateway.importPorts, { first: 20_000, last: 29_999 });
  assert.is(parsed.xds.host, "0.0.0.0");
  assert.is(parsed.createNamespaces, false);
  assert.is(parsed.leaderElection, undefined);
  assert.is(parsed.material.signer.cluster, "cluster-a");
  assert.is(parsed.material.bundle.caPems().length, 1);
  assert.ok(Object.isFrozen(parsed));
});

config("leader election takes its identity from the file, else the pod name", async () => {
  const named = await parseControllerConfig({ ...good, leaderElection: { namespace: "fedgate-system", leaseName: "fedgate", identity: "replica-1" } });
  assert.is(named.leaderElection?.identity, "replica-1");
  const unnamed = await parseControllerConfig({ ...good, leaderElection: { namespace: "fedgate-system", leaseName: "fedgate" } });
  assert.ok((unnamed.leaderElection?.identity.length ?? 0) > 0);
});

const cases: { name: string; input: unknown; paths: string[] }[] = [
  {
    name: "every schema problem at once",
    input: { ...good, cluster: "Cluster_A", nats: { servers: ["http://x"], credsFile: "" }, gateway: { exportAddress: { host: "gw", port: 0 }, importAddress: "gw.local" }, extra: 1 },
    paths: ["", "cluster", "nats.servers.0", "nats.credsFile", "gateway.exportAddress.port", "gateway.importAddress"],
  },
  { name: "an inverted import port range", input: { ...good, gateway: { ...good.gateway, importPorts: { first: 30_000, last: 20_000 } } }, paths: ["gateway.importPorts"] },
  {
    name: "every unreadable file",
    input: { ...good, nats: { ...good.nats, credsFile: join(dir, "missing.creds") }, trust: { ...good.trust, bundleFile: join(dir, "missing.pem"), gatewayKeyFile: join(dir, "missing.key") } },
    paths: ["nats.credsFile", "trust.bundleFile", "trust.gatewayKeyFile"],
  },
  {
    name: "files that hold the wrong thing",
    input: { ...good, nats: { ...good.nats, credsFile: join(dir, "gateway.pem") }, trust: { ...good.trust, bundleFile: join(dir, "cluster.creds"), gatewayCertFile: join(dir, "gateway.key"), controllerKeyFile: join(dir, "bundle.pem") } },
    paths: ["nats.credsFile", "trust.gatewayCertFile", "trust.bundleFile", "trust.controllerCertFile"],
  },
];

for (const c of cases) {
  config(`refuses ${c.name} with a ControllerConfigError listing each`, async () => {
    try {
      await parseControllerConfig(c.input);
      assert.unreachable("should have thrown");
    } catch (err) {
      assert.instance(err, ControllerConfigError);
      const e = err as ControllerConfigError;
      assert.is(e.code, "FEDGATE_CONTROLLER_CONFIG_INVALID");
      assert.equal([...new Set(e.problems.map((p) => p.path))].sort(), [...c.paths].sort());
    }
  });
}

config("the command exits 2 and prints every problem of a bad file", () => {
  const file = join(dir, "bad.json");
  writeFileSync(file, JSON.stringify({ ...good, cluster: "A", xds: { port: 70_000 } }));
  const result = spawnSync(bin, ["controller", "--config", file], { encoding: "utf8" });
  assert.is(result.status, 2);
  assert.match(result.stderr, /FEDGATE_CONTROLLER_CONFIG_INVALID/);
  assert.match(result.stderr, /cluster: /);
  assert.match(result.stderr, /xds\.port: /);
});

config("the command exits 2 on a file that is not JSON, and without --config", () => {
  const file = join(dir, "garbage.json");
  writeFileSync(file, "{ not json");
  const garbage = spawnSync(bin, ["controller", "--config", file], { encoding: "utf8" });
  assert.is(garbage.status, 2);
  assert.match(garbage.stderr, /FEDGATE_CONTROLLER_CONFIG_INVALID/);
  assert.is(spawnSync(bin, ["controller"], { encoding: "utf8" }).status, 2);
});

config("the command exits 1 and says why when it cannot start (no NATS there)", () => {
  const file = join(dir, "unreachable.json");
  // Port 1 on loopback: nothing listens there, so the first connect is refused at once.
  writeFileSync(file, JSON.stringify({ ...good, nats: { ...good.nats, servers: ["nats://127.0.0.1:1"] }, log: { format: "json" } }));
  const result = spawnSync(bin, ["controller", "--config", file], { encoding: "utf8", timeout: 60_000 });
  assert.is(result.status, 1);
  assert.match(result.stdout + result.stderr, /controller failed to start/);
});

config.run();
