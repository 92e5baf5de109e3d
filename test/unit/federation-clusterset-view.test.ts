import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ClusterSetView, type ClusterExport, type ClusterRegistration, type ViewChange } from "../../federation/internal.ts";

const GRACE_MS = 5_000;
const TTL_MS = 30_000;

function setup(self = "a") {
  let now = 1_000_000;
  // One fake clock serves as both the local and the server clock; the exchange estimates the latter.
  const view = new ClusterSetView({ self, now: () => now, serverNow: () => now, reconnectGraceMs: GRACE_MS });
  const changes: ViewChange[] = [];
  view.onChange((c) => changes.push(c));
  return {
    view,
    changes,
    lease: (cluster: string, revision: number) => view.setLease(cluster, revision, { renewedAtMs: now, ttlMs: TTL_MS }),
    advance: (ms: number) => {
      now += ms;
      view.tick();
    },
  };
}

function registration(name: string): ClusterRegistration {
  return { name, clusterSet: "set", region: "r1", zones: ["z1"], network: "n", gatewayAddresses: [{ host: "127.0.0.1", port: 15443 }], identity: `spiffe://td/cluster/${name}/gateway`, readVersions: [1] };
}

function exported(cluster: string, name: string, extra: Partial<ClusterExport> = {}): ClusterExport {
  return {
    cluster,
    revision: 1,
    namespace: "shop",
    name,
    ports: [{ protocol: "TCP", port: 80 }],
    type: "ClusterSetIP",
    sessionAffinity: "None",
    exportCreatedAt: "2026-01-01T00:00:00.000Z",
    readyEndpoints: [{ zone: "z1", ready: 2 }],
    gateway: { host: "127.0.0.1", port: 15443 },
    ...extra,
  };
}

/** b is registered, leased and exports shop/web. */
function withPeer(t: ReturnType<typeof setup>) {
  t.view.setRegistration("b", 1, registration("b"));
  t.lease("b", 2);
  t.view.setExport("b.shop.web", 3, exported("b", "web"));
}

const view = suite("ClusterSetView");

view("merges one service's exports across clusters, oldest export first", () => {
  const t = setup();
  t.view.setExport("c.shop.web", 1, exported("c", "web", { exportCreatedAt: "2026-01-01T00:00:00.000Z" }));
  t.view.setExport("b.shop.web", 1, exported("b", "web", { exportCreatedAt: "2025-06-01T00:00:00.000Z" }));
  t.view.setExport("a.shop.web", 1, exported("a", "web", { exportCreatedAt: "2026-01-01T00:00:00.000Z" }));
  assert.equal(t.view.service("shop/web")?.exports.map((e) => e.cluster), ["b", "a", "c"]);
});

view("withdraws exports of a cluster whose lease lapsed while the bus was healthy", () => {
  const t = setup();
  withPeer(t);
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS);
  assert.is(t.view.service("shop/web")?.exports.length, 1);
  t.changes.length = 0;
  t.advance(TTL_MS + 1); // no event: the server drops an expired lease silently
  assert.ok(t.view.cluster("b")?.stale);
  assert.is(t.view.service("shop/web"), undefined);
  assert.ok(t.changes.some((c) => c.services.has("shop/web") && c.clusters.has("b")));
});

view("restores a stale cluster's exports when its lease returns", () => {
  const t = setup();
  withPeer(t);
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS);
  t.advance(TTL_MS + 1);
  assert.ok(t.view.cluster("b")?.stale);
  t.lease("b", 5);
  assert.not.ok(t.view.cluster("b")?.stale);
  assert.is(t.view.service("shop/web")?.exports[0]?.cluster, "b");
});

view("keeps every route while it cannot see the bus, however long", () => {
  const t = setup();
  withPeer(t);
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS);
  t.view.setBusHealthy(false);
  t.advance(10 * 60_000);
  assert.not.ok(t.view.cluster("b")?.stale);
  assert.is(t.view.service("shop/web")?.exports.length, 1);
});

view("gives peers the reconnect grace to renew before evicting them", () => {
  const t = setup();
  withPeer(t);
  t.advance(TTL_MS * 3); // the bus was down for longer than the TTL
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS - 1);
  assert.not.ok(t.view.cluster("b")?.stale, "still inside the grace");
  t.lease("b", 5); // b renewed after reconnecting
  t.advance(GRACE_MS);
  assert.not.ok(t.view.cluster("b")?.stale);
});

view("evicts a peer that does not renew within the grace", () => {
  const t = setup();
  withPeer(t);
  t.advance(TTL_MS * 3);
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS);
  assert.ok(t.view.cluster("b")?.stale);
});

view("never marks itself stale", () => {
  const t = setup("a");
  t.view.setRegistration("a", 1, registration("a"));
  t.view.setExport("a.shop.web", 2, exported("a", "web"));
  t.view.setBusHealthy(true);
  t.advance(GRACE_MS * 2);
  assert.not.ok(t.view.cluster("a")?.stale);
  assert.is(t.view.service("shop/web")?.exports.length, 1);
});

view("hides an export from clusters outside its consumers", () => {
  const onlyC = exported("b", "web", { consumers: ["c"] });
  const a = setup("a");
  a.lease("b", 1);
  a.view.setExport("b.shop.web", 2, onlyC);
  assert.is(a.view.service("shop/web"), undefined);
  const c = setup("c");
  c.lease("b", 1);
  c.view.setExport("b.shop.web", 2, onlyC);
  assert.is(c.view.service("shop/web")?.exports.length, 1);
});

view("a resync removes exactly what vanished from the bus and reports only real changes", () => {
  const t = setup();
  withPeer(t);
  t.view.setExport("b.shop.cart", 4, exported("b", "cart"));
  t.changes.length = 0;
  t.view.beginResync();
  t.view.setRegistration("b", 1, registration("b"));
  t.lease("b", 2);
  t.view.setExport("b.shop.web", 3, exported("b", "web"));
  t.view.endResync();
  assert.is(t.view.service("shop/cart"), undefined);
  assert.is(t.view.service("shop/web")?.exports.length, 1);
  assert.equal(
    t.changes.flatMap((c) => [...c.services]),
    ["shop/cart"],
  );
});

view("re-applying the same revision is not a change", () => {
  const t = setup();
  withPeer(t);
  t.changes.length = 0;
  t.view.setExport("b.shop.web", 3, exported("b", "web"));
  t.view.setRegistration("b", 1, registration("b"));
  assert.equal(t.changes, []);
});

view.run();
