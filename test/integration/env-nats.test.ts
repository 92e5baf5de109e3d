import { suite } from "uvu";
import * as assert from "uvu/assert";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { startNats, type NatsEnv } from "../env/index.ts";

interface Ctx {
  nats?: NatsEnv;
  nc?: NatsConnection;
  kv?: KV;
}
const jetstream = suite<Ctx>("test/env: JetStream KV on a real 3-node nats-server cluster", {});

jetstream.before(async (ctx) => {
  ctx.nats = await startNats({ nodes: 3 });
  ctx.nc = await connect({ servers: ctx.nats.urls, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
  ctx.kv = await new Kvm(ctx.nc).create("smoke", { history: 5, replicas: 3 });
});
jetstream.after(async (ctx) => {
  await ctx.nc?.close();
  await ctx.nats?.stop();
});

jetstream("put, watch and history work across the cluster", async ({ kv }) => {
  const store = kv as KV;
  const watch = await store.watch({ key: "svc.>" });
  const seen: string[] = [];
  const watching = (async () => {
    for await (const entry of watch) {
      seen.push(`${entry.key}=${entry.string()}`);
      if (seen.length === 3) break;
    }
  })();
  await store.put("svc.checkout", "v1");
  await store.put("svc.checkout", "v2");
  await store.put("svc.cart", "v1");
  await watching;
  assert.equal(seen, ["svc.checkout=v1", "svc.checkout=v2", "svc.cart=v1"]);

  const history: string[] = [];
  for await (const entry of await store.history({ key: "svc.checkout" })) history.push(entry.string());
  assert.equal(history, ["v1", "v2"]);
});

jetstream("acknowledged writes survive killing one node", async (ctx) => {
  const store = ctx.kv as KV;
  const nats = ctx.nats as NatsEnv;
  const acknowledged = new Map<string, string>();
  const putUntilAcked = async (key: string, value: string) => {
    for (let attempt = 0; ; attempt++) {
      try {
        await store.put(key, value);
        acknowledged.set(key, value);
        return;
      } catch (err) {
        // While the killed node's streams elect new leaders the client sees timeouts or "no responders"
        // for a few seconds; an unacknowledged write may be retried.
        if (attempt > 150) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  for (let i = 0; i < 200; i++) {
    if (i === 100) await nats.kill(0);
    await putUntilAcked(`durable.k${i % 40}`, `value-${i}`);
  }
  // The two survivors hold a quorum: every acknowledged value reads back.
  for (const [key, value] of acknowledged) assert.is((await store.get(key))?.string(), value, key);

  await nats.restart(0);
  const viaRestarted = await connect({ servers: (nats.nodes[0] as { url: string }).url });
  try {
    const replica = await new Kvm(viaRestarted).open("smoke");
    for (const [key, value] of acknowledged) assert.is((await replica.get(key))?.string(), value, `${key} via the restarted node`);
  } finally {
    await viaRestarted.close();
  }
});

jetstream.run();
