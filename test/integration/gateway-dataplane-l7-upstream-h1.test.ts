import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { PassThrough, Readable } from "node:stream";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { H1Connection, ReplayBody } from "../../gateway/internal.ts";
import type { AttemptResult, BodyFraming } from "../../gateway/internal.ts";

/** A body 16× the socket's usual read size, so it streams in many pieces and fills the response stream. */
const BIG_BYTES = 1 << 20;
const big = Buffer.alloc(BIG_BYTES, "x");
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

interface Ctx {
  server: Server;
  port: number;
  /** Connections the server accepted (a reused upstream connection does not add one). */
  accepted: number;
  sockets: Set<Socket>;
}

const h1 = suite<Ctx>("H1Connection: the gateway's pooled upstream HTTP/1.1 client against Node's HTTP server", {} as Ctx);

h1.before.each(async (ctx) => {
  ctx.accepted = 0;
  ctx.sockets = new Set();
  ctx.server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url === "/big") return res.writeHead(200, { "content-length": BIG_BYTES }).end(big);
      if (req.url === "/chunked") {
        res.writeHead(200, { trailer: "x-sum" });
        res.write("part1-");
        res.addTrailers({ "x-sum": "42" });
        return res.end("part2");
      }
      const body = Buffer.concat(chunks);
      res.writeHead(200, { "content-length": body.length, "x-framing": req.headers["transfer-encoding"] ?? `length ${req.headers["content-length"] ?? "none"}` }).end(body);
    });
  });
  ctx.server.keepAliveTimeout = 60_000;
  ctx.server.on("connection", (s: Socket) => {
    ctx.accepted += 1;
    ctx.sockets.add(s);
    s.on("close", () => ctx.sockets.delete(s));
  });
  await new Promise<void>((resolve) => ctx.server.listen(0, "127.0.0.1", resolve));
  ctx.port = (ctx.server.address() as AddressInfo).port;
});

h1.after.each(async (ctx) => {
  ctx.server.closeAllConnections();
  await new Promise((resolve) => ctx.server.close(resolve));
});

async function open(port: number, pool: H1Connection[]): Promise<H1Connection> {
  const socket = connect({ host: "127.0.0.1", port });
  await new Promise((resolve) => socket.once("connect", resolve));
  return new H1Connection({ socket, release: (c) => pool.push(c) });
}

function exchange(conn: H1Connection, request: { method: string; path: string; framing: BodyFraming; source?: Readable; headers?: Record<string, string> }): Promise<AttemptResult> {
  const source = request.source ?? Readable.from([]);
  const body = new ReplayBody({ source, capBytes: 64 * 1024, empty: request.framing === "none" });
  return new Promise((resolve) => conn.send({ method: request.method, path: request.path, authority: "backend", headers: request.headers ?? {}, framing: request.framing, body }, resolve));
}

async function bodyOf(r: AttemptResult): Promise<Buffer> {
  if (!r.ok) throw new Error(`attempt failed: ${r.failure}`);
  if (Buffer.isBuffer(r.response.body)) return r.response.body;
  const chunks: Buffer[] = [];
  for await (const c of r.response.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

h1("a 1 MiB response streams whole through a slow reader, then the same connection serves the next request", async (ctx) => {
  const pool: H1Connection[] = [];
  const conn = await open(ctx.port, pool);
  const r = await exchange(conn, { method: "GET", path: "/big", framing: "none" });
  assert.ok(r.ok && !Buffer.isBuffer(r.response.body), "a big body is a stream");
  const chunks: Buffer[] = [];
  if (r.ok && !Buffer.isBuffer(r.response.body)) {
    for await (const c of r.response.body) {
      chunks.push(c as Buffer);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  assert.is(sha(Buffer.concat(chunks)), sha(big));
  assert.is(pool.length, 1, "back in the pool once both directions ended");
  const next = await exchange(pool.pop()!, { method: "GET", path: "/small", framing: "none" });
  assert.is((await bodyOf(next)).length, 0);
  assert.is(ctx.accepted, 1, "one upstream connection for both");
});

h1("request bodies: Content-Length sent as is, a chunked one re-framed as chunks; both echoed byte for byte", async (ctx) => {
  const pool: H1Connection[] = [];
  const conn = await open(ctx.port, pool);
  const fixed = await exchange(conn, { method: "POST", path: "/echo", framing: "length", headers: { "content-length": "5" }, source: Readable.from([Buffer.from("hel"), Buffer.from("lo")]) });
  assert.is((await bodyOf(fixed)).toString(), "hello");
  assert.ok(fixed.ok && fixed.response.raw["x-framing"] === "length 5");
  const source = new PassThrough();
  const pending = exchange(pool.pop()!, { method: "PUT", path: "/echo", framing: "chunked", source });
  source.write("a".repeat(70_000));
  source.end("tail");
  const chunked = await pending;
  assert.is((await bodyOf(chunked)).toString(), `${"a".repeat(70_000)}tail`);
  assert.ok(chunked.ok && chunked.response.raw["x-framing"] === "chunked");
  assert.is(ctx.accepted, 1);
});

h1("a chunked response keeps its trailers; a HEAD answer has no body and the connection is reused", async (ctx) => {
  const pool: H1Connection[] = [];
  const conn = await open(ctx.port, pool);
  const r = await exchange(conn, { method: "GET", path: "/chunked", framing: "none" });
  assert.is((await bodyOf(r)).toString(), "part1-part2");
  assert.ok(r.ok);
  if (r.ok) assert.equal(r.response.trailers(), { "x-sum": "42" });
  const head = await exchange(pool.pop()!, { method: "HEAD", path: "/big", framing: "none" });
  assert.ok(head.ok && head.response.raw["content-length"] === String(BIG_BYTES));
  assert.is((await bodyOf(head)).length, 0);
  assert.is(pool.length, 1, "reused after HEAD");
  assert.is(ctx.accepted, 1);
});

h1("a pooled connection the server closed is not idle; a reused one closed before any answer reports refused_stream (as when a server drops an idle keep-alive connection)", async (ctx) => {
  const pool: H1Connection[] = [];
  const conn = await open(ctx.port, pool);
  await bodyOf(await exchange(conn, { method: "GET", path: "/small", framing: "none" }));
  const pooled = pool.pop()!;
  for (const s of ctx.sockets) s.destroy();
  await new Promise((resolve) => pooled.socket.once("close", resolve));
  assert.not.ok(pooled.idle, "a closed connection is never handed out");
  const second = await open(ctx.port, pool);
  await bodyOf(await exchange(second, { method: "GET", path: "/small", framing: "none" }));
  const reused = pool.pop()!;
  ctx.server.once("request", (req) => req.socket.destroy());
  const r = await exchange(reused, { method: "GET", path: "/small", framing: "none" });
  assert.equal(r, { ok: false, failure: "refused_stream" });
});

h1.run();
