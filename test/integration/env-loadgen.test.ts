import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { LoadgenFailedError, runLoadgen, runLoadgenArgs, type LoadgenReport } from "../../bench/support/loadgen-runner.ts";

/**
 * test/env/loadgen, the constant-rate load generator of the gateway bench,
 * against real local HTTP servers: it must charge a server's delay to the
 * requests (measured from their scheduled send times, so a stall shows in
 * every request queued behind it) and count failures by kind. Bounds only,
 * with wide margins: the machine is shared.
 */

const DELAY_MS = 25;
const STALL_MS = 1_000;
const CHUNKED_BODY_BYTES = 100 * 1024;

interface Ctx {
  servers: Server[];
  requests: number;
}
const loadgen = suite<Ctx>("test/env loadgen: open-loop HTTP/1.1 load against real servers", { servers: [], requests: 0 });

async function serve(ctx: Ctx, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  ctx.servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function assertAccounted(r: LoadgenReport): void {
  assert.ok(r.sent <= r.scheduled, `sent ${r.sent} <= scheduled ${r.scheduled}`);
  assert.is(r.sent, r.completed + r.errors.read + r.errors.timeout + r.errors.parse, "every sent request completed or failed once");
}

loadgen.after.each(async (ctx) => {
  await Promise.all(ctx.servers.map((s) => new Promise((resolve) => s.close(resolve))));
  ctx.servers = [];
  ctx.requests = 0;
});

loadgen("charges a server's delay to every request (p50 at least the delay)", async (ctx) => {
  const target = await serve(ctx, (_req, res) => {
    ctx.requests += 1;
    setTimeout(() => res.end("ok"), DELAY_MS);
  });
  const r = await runLoadgen({ target, rate: 100, durationMs: 2_000, connections: 4 });
  assert.is(r.scheduled, 200, "4 connections x 50 slots of a 100/s timetable over 2 s");
  assert.is(ctx.requests, r.sent + 4, "the server saw every sent request plus one unmeasured priming request per connection");
  assert.ok(r.completed > 0, "some requests completed");
  assertAccounted(r);
  assert.equal([r.errors.connect, r.errors.parse, r.errors.status], [0, 0, 0]);
  assert.ok(r.latencyMs.p50 >= DELAY_MS - 5, `p50 ${r.latencyMs.p50} ms >= ${DELAY_MS - 5} ms`);
  assert.ok(r.latencyMs.p50 <= r.latencyMs.p90 && r.latencyMs.p90 <= r.latencyMs.p99 && r.latencyMs.p99 <= r.latencyMs.max, "percentiles ordered");
});

loadgen("charges a stall to every request scheduled behind it (no coordinated omission)", async (ctx) => {
  // The first measured request (the second one: the first primes the
  // connection) is held for a second. One connection on a 100/s
  // timetable: the ~100 requests due meanwhile wait behind it, and those due
  // in its first half (a quarter of the run) are each late by over 500 ms. A
  // closed-loop tool timing from the actual send would see one slow request.
  const target = await serve(ctx, (_req, res) => {
    ctx.requests += 1;
    if (ctx.requests === 2) setTimeout(() => res.end("ok"), STALL_MS);
    else res.end("ok");
  });
  const r = await runLoadgen({ target, rate: 100, durationMs: 2_000, connections: 1, timeoutMs: 10_000 });
  assertAccounted(r);
  assert.ok(r.completed > 1, `completed ${r.completed}`);
  assert.ok(r.latencyMs.p90 >= STALL_MS / 2, `p90 ${r.latencyMs.p90} ms >= ${STALL_MS / 2} ms`);
  assert.ok(r.latencyMs.max >= STALL_MS, `max ${r.latencyMs.max} ms >= ${STALL_MS} ms`);
});

loadgen("reads chunked bodies on kept-alive connections", async (ctx) => {
  const chunk = Buffer.alloc(CHUNKED_BODY_BYTES / 2, 120);
  const target = await serve(ctx, (_req, res) => {
    // No content-length: Node sends the two writes as chunks.
    res.write(chunk);
    res.end(chunk);
  });
  const r = await runLoadgen({ target, host: "echo.demo.svc.clusterset.local", path: "/big", rate: 50, durationMs: 1_000, connections: 2 });
  assertAccounted(r);
  assert.ok(r.completed > 0, `completed ${r.completed}`);
  assert.equal([r.errors.read, r.errors.parse, r.errors.status], [0, 0, 0]);
  assert.ok(r.bytesRead >= r.completed * CHUNKED_BODY_BYTES, `read ${r.bytesRead} bytes for ${r.completed} bodies`);
});

loadgen("counts every scheduled request as a connect error on a closed port", async (ctx) => {
  const target = await serve(ctx, (_req, res) => res.end("ok"));
  await new Promise((resolve) => ctx.servers.pop()?.close(resolve));
  const r = await runLoadgen({ target, rate: 50, durationMs: 1_000, connections: 2, prime: false });
  assert.is(r.scheduled, 50);
  assert.is(r.errors.connect, r.scheduled);
  assert.equal([r.sent, r.completed, r.achievedRate], [0, 0, 0]);
});

loadgen("counts non-2xx/3xx responses as status errors and still times them", async (ctx) => {
  const target = await serve(ctx, (_req, res) => {
    res.statusCode = 503;
    res.end("no");
  });
  const r = await runLoadgen({ target, rate: 50, durationMs: 1_000, connections: 2 });
  assertAccounted(r);
  assert.ok(r.completed > 0);
  assert.is(r.errors.status, r.completed);
});

loadgen("rejects bad flags, naming every problem", async () => {
  const err = await runLoadgenArgs(["-target", "nowhere", "-rate", "0", "-connections", "0"]).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(err, LoadgenFailedError);
  const message = (err as LoadgenFailedError).message;
  for (const problem of ["-target must be host:port", "-rate must be > 0", "-connections must be >= 1"]) assert.ok(message.includes(problem), `${problem} in ${message}`);
});

loadgen.run();
