import { spawnSync } from "node:child_process";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { GatewayBootstrapError, parseBootstrap } from "../../gateway/index.ts";

const boot = suite("gateway bootstrap");
const bin = new URL("../../bin/fedgate.js", import.meta.url).pathname;

const valid = { node: { id: "gw-a", cluster: "a" }, xds_servers: [{ server_uri: "127.0.0.1:18000" }] };

boot("a minimal Envoy-style bootstrap gets fedgate's defaults", () => {
  const b = parseBootstrap(valid);
  assert.is(b.admin.port, 15000);
  assert.is(b.fedgate.handshake_timeout_ms, 5_000);
  assert.is(b.fedgate.drain_timeout_ms, 30_000);
  assert.equal(b.fedgate.port_overrides, {});
  assert.is(b.fedgate.xds_protocol, "delta");
  assert.is(parseBootstrap({ ...valid, fedgate: { xds_protocol: "sotw" } }).fedgate.xds_protocol, "sotw");
  assert.ok(Object.isFrozen(b));
});

const bad: { name: string; input: unknown; paths: string[] }[] = [
  { name: "empty object", input: {}, paths: ["node", "xds_servers"] },
  { name: "server without a port, node without id", input: { node: { cluster: "a" }, xds_servers: [{ server_uri: "localhost" }] }, paths: ["node.id", "xds_servers.0.server_uri"] },
  { name: "bad override and admin port", input: { ...valid, admin: { port: 70_000 }, fedgate: { port_overrides: { http: 1 }, xds_protocol: "incremental" } }, paths: ["admin.port", "fedgate.port_overrides.http", "fedgate.xds_protocol"] },
];

for (const c of bad) {
  boot(`refuses ${c.name}, listing every problem`, () => {
    try {
      parseBootstrap(c.input);
      assert.unreachable("accepted");
    } catch (err) {
      assert.instance(err, GatewayBootstrapError);
      assert.is((err as GatewayBootstrapError).code, "FEDGATE_GATEWAY_INVALID_BOOTSTRAP");
      const paths = (err as GatewayBootstrapError).problems.map((p) => p.path);
      for (const p of c.paths) assert.ok(paths.includes(p), `${p} in ${paths.join(", ")}`);
    }
  });
}

boot("`fedgate gateway` exits 2 with the typed error for a missing bootstrap, and 2 without --bootstrap", () => {
  const missing = spawnSync(bin, ["gateway", "--bootstrap", "/nonexistent/bootstrap.json"], { encoding: "utf8" });
  assert.is(missing.status, 2);
  assert.match(missing.stderr, /FEDGATE_GATEWAY_INVALID_BOOTSTRAP/);
  const none = spawnSync(bin, ["gateway"], { encoding: "utf8" });
  assert.is(none.status, 2);
  assert.match(none.stderr, /--bootstrap <file> is required/);
});

boot.run();
