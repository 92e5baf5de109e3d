import { suite } from "uvu";
import * as assert from "uvu/assert";
import {
  InvalidSpiffeIdError,
  clusterPathPrefix,
  gatewaySpiffeId,
  isValidClusterName,
  isValidTrustDomain,
  parseClusterSpiffeId,
  parseSpiffeId,
  workloadSpiffeId,
} from "../../trust/index.ts";

const parse = suite("parseSpiffeId");

const valid: { name: string; input: string; expect: { trustDomain: string; path: string } }[] = [
  { name: "trust domain only", input: "spiffe://example.org", expect: { trustDomain: "example.org", path: "" } },
  { name: "gateway", input: "spiffe://example.org/cluster/a/gateway", expect: { trustDomain: "example.org", path: "/cluster/a/gateway" } },
  { name: "mixed-case path", input: "spiffe://td_1-x.y/Ns/Shop.v2/sa-x", expect: { trustDomain: "td_1-x.y", path: "/Ns/Shop.v2/sa-x" } },
];
for (const c of valid) {
  parse(`accepts ${c.name}`, () => {
    const id = parseSpiffeId(c.input);
    assert.is(id.trustDomain, c.expect.trustDomain);
    assert.is(id.path, c.expect.path);
    assert.is(id.uri, c.input);
  });
}

const invalid: { name: string; input: string }[] = [
  { name: "another scheme", input: "https://example.org/x" },
  { name: "uppercase scheme", input: "SPIFFE://example.org/x" },
  { name: "empty trust domain", input: "spiffe:///x" },
  { name: "uppercase trust domain", input: "spiffe://Example.org/x" },
  { name: "port", input: "spiffe://example.org:443/x" },
  { name: "userinfo", input: "spiffe://user@example.org/x" },
  { name: "query", input: "spiffe://example.org/x?y=1" },
  { name: "fragment", input: "spiffe://example.org/x#y" },
  { name: "trailing slash", input: "spiffe://example.org/x/" },
  { name: "empty segment", input: "spiffe://example.org//x" },
  { name: "dot segment", input: "spiffe://example.org/./x" },
  { name: "dot-dot segment", input: "spiffe://example.org/a/../b" },
  { name: "percent-encoding", input: "spiffe://example.org/a%20b" },
  { name: "longer than 2048 bytes", input: `spiffe://example.org/${"a".repeat(2040)}` },
  { name: "trust domain over 255 characters", input: `spiffe://${"a".repeat(256)}/x` },
];
for (const c of invalid) {
  parse(`rejects ${c.name} with InvalidSpiffeIdError`, () => {
    assert.throws(() => parseSpiffeId(c.input), (err: unknown) => err instanceof InvalidSpiffeIdError && err.code === "FEDGATE_TRUST_INVALID_SPIFFE_ID");
  });
}

const shape = suite("fedgate identity shape");

shape("reads the cluster and workload path of a fedgate ID", () => {
  const id = parseClusterSpiffeId("spiffe://example.org/cluster/eu-west.prod/ns/shop/sa/cart");
  assert.is(id.cluster, "eu-west.prod");
  assert.is(id.workloadPath, "/ns/shop/sa/cart");
});

for (const input of [
  "spiffe://example.org",
  "spiffe://example.org/cluster",
  "spiffe://example.org/cluster/a",
  "spiffe://example.org/clusters/a/gateway",
  "spiffe://example.org/ns/shop/sa/cart",
  "spiffe://example.org/cluster/A/gateway",
  "spiffe://example.org/cluster/-a/gateway",
  "spiffe://example.org/cluster/a_b/gateway",
]) {
  shape(`rejects ${input} as not fedgate-shaped`, () => {
    assert.throws(() => parseClusterSpiffeId(input), (err: unknown) => err instanceof InvalidSpiffeIdError);
  });
}

shape("builds gateway and workload IDs under the cluster prefix", () => {
  assert.is(gatewaySpiffeId("example.org", "a"), "spiffe://example.org/cluster/a/gateway");
  assert.is(workloadSpiffeId("example.org", "a", "shop", "cart"), "spiffe://example.org/cluster/a/ns/shop/sa/cart");
  assert.is(clusterPathPrefix("a"), "/cluster/a/");
  assert.throws(() => gatewaySpiffeId("Example.org", "a"), (err: unknown) => err instanceof InvalidSpiffeIdError);
  assert.throws(() => workloadSpiffeId("example.org", "a", "bad/ns", "x"), (err: unknown) => err instanceof InvalidSpiffeIdError);
});

shape("validates trust domains and cluster names", () => {
  assert.ok(isValidTrustDomain("example.org"));
  assert.not.ok(isValidTrustDomain(""));
  assert.not.ok(isValidTrustDomain("ex ample"));
  assert.ok(isValidClusterName("a"));
  assert.ok(isValidClusterName(`${"a".repeat(63)}.${"b".repeat(63)}`));
  assert.not.ok(isValidClusterName("a".repeat(128)));
  assert.not.ok(isValidClusterName("a."));
});

parse.run();
shape.run();
