import { Agent, request as h1request } from "node:http";
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from "node:http2";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { H2_MAX_HEADER_LIST_BYTES, MAX_HEADER_BYTES } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { waitFor } from "../support/gateway-harness.ts";
import { L7Topology, raw, SMUGGLED_MARK, WEB_HOST } from "../support/l7-harness.ts";
import { prng } from "../support/prng.ts";

const pki = await createClusterSetPki(["a"]);
const registry = ProtoRegistry.load();
const LISTENER = "fedgate-import-9000";
const FUZZ_CASES = 300;
const FUZZ_CONCURRENCY = 12;

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const agent = new Agent({ keepAlive: false });
    const req = h1request({ host: "127.0.0.1", port, path, agent, headers: { host: WEB_HOST } }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

const VALID_H1 = Buffer.from(`POST /fuzz HTTP/1.1\r\nHost: ${WEB_HOST}\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello`);
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** A valid h2c opening: preface, empty SETTINGS, a HEADERS frame (HPACK literals without indexing) ending the stream. */
function validH2(): Buffer {
  const literal = (name: string, value: string) => Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  const block = Buffer.concat([literal(":method", "GET"), literal(":path", "/fuzz"), literal(":scheme", "http"), literal(":authority", WEB_HOST)]);
  return Buffer.concat([H2_PREFACE, frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0x5, 1, block)]);
}

function mutate(input: Buffer, rand: () => number, keepPrefix: number): Buffer {
  const bytes = [...input];
  const edits = 1 + Math.floor(rand() * 6);
  for (let i = 0; i < edits; i++) {
    const at = keepPrefix + Math.floor(rand() * Math.max(1, bytes.length - keepPrefix));
    const op = Math.floor(rand() * 5);
    if (op === 0) bytes[at] = Math.floor(rand() * 256);
    else if (op === 1) bytes.splice(at, 1);
    else if (op === 2) bytes.splice(at, 0, ...Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Math.floor(rand() * 256)));
    else if (op === 3) bytes.splice(at);
    else bytes.splice(at, 0, ...bytes.slice(at, at + Math.floor(rand() * 64)));
  }
  return Buffer.from(bytes);
}

interface Ctx {
  topology?: L7Topology;
}

const bad = suite<Ctx>("gateway HTTP import listener: bad input is refused, counted, and does not stop it", {});

bad.after.each(async (ctx) => {
  await ctx.topology?.close();
  ctx.topology = undefined;
});

bad("oversized headers get 431, a malformed request 400, a stalled head or preface is cut; a normal request still works", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, handshakeTimeoutMs: 1_000 }));
  const port = t.importPort("a");
  const big = await raw(port, `GET / HTTP/1.1\r\nHost: ${WEB_HOST}\r\nX-Big: ${"x".repeat(32 * 1024)}\r\n\r\n`);
  assert.match(big.reply, /^HTTP\/1\.1 431 /);
  const malformed = await raw(port, "GET / HTTP/1.1\r\nHost\r\n\r\n");
  assert.match(malformed.reply, /^HTTP\/1\.1 400 /);
  const noHost = await raw(port, "GET / HTTP/1.0\r\n\r\n");
  assert.match(noHost.reply, /^HTTP\/1\.[01] 400 /, "no Host: 400");
  const slowHead = await raw(port, `GET / HTTP/1.1\r\nHost: ${WEB_HOST}\r\n`, 10_000);
  assert.ok(slowHead.closedByGateway, "a request head that never ends is cut");
  assert.match(slowHead.reply, /^HTTP\/1\.1 408 /);
  const slowPreface = await raw(port, "PRI * HTTP/2", 10_000);
  assert.ok(slowPreface.closedByGateway, "a preface that never ends is cut");
  const m = (reason: string) => t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason });
  assert.is(m("header_overflow"), 1);
  assert.is(m("malformed"), 2);
  assert.is(m("headers_timeout"), 2);
  const ok = await get(port, "/after");
  assert.is(ok.status, 200);
  assert.is(ok.body, "a-1 GET /after ");
});

/** One h2 request on `session`; resolves with its status and body once the stream closes. */
function h2get(session: ClientHttp2Session, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ":path": "/h2", ":authority": WEB_HOST, ...headers });
    let status = 0;
    let body = "";
    req.on("response", (h: IncomingHttpHeaders) => (status = Number(h[":status"])));
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("error", reject);
    req.on("close", () => resolve({ status, body }));
    req.end();
  });
}

bad("h2: a header list over the limit gets 431, counted as header_overflow; the same connection and others keep working", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 } }));
  const port = t.importPort("a");
  const session = h2connect(`http://127.0.0.1:${port}`);
  try {
    const settings = await new Promise<{ maxHeaderListSize?: number }>((resolve) => session.once("remoteSettings", resolve));
    assert.is(settings.maxHeaderListSize, H2_MAX_HEADER_LIST_BYTES, "advertised to the client");
    // Two fields of 12 KiB: over MAX_HEADER_BYTES, under what Node itself enforces.
    const big = await h2get(session, { "x-big-1": "x".repeat(12 * 1024), "x-big-2": "y".repeat(12 * 1024) });
    assert.is(big.status, 431);
    assert.is(big.body, "");
    // Just under the limit (the pseudo-headers and the 32 bytes per field count too): served.
    const near = await h2get(session, { "x-near": "z".repeat(MAX_HEADER_BYTES - 1024) });
    assert.is(near.status, 200);
    const m = (reason: string) => t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason });
    assert.is(m("header_overflow"), 1);
    assert.is(m("h2_protocol"), 0, "the session was not ended");
    const after = await h2get(session, {});
    assert.is(after.status, 200);
    assert.is(after.body, "a-1 GET /h2 ");
    const other = await get(port, "/h1-after");
    assert.is(other.status, 200);
  } finally {
    session.close();
  }
});

bad(`fuzz: ${FUZZ_CASES} mutated HTTP/1.1 requests and h2 frame sequences (seeded), then a normal request works`, async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, handshakeTimeoutMs: 1_000 }));
  const port = t.importPort("a");
  const rand = prng(0x5eed);
  const cases = Array.from({ length: FUZZ_CASES }, (_, i) => (i % 2 === 0 ? mutate(VALID_H1, rand, 0) : mutate(validH2(), rand, i % 4 === 1 ? H2_PREFACE.length : 0)));
  let next = 0;
  let answered = 0;
  await Promise.all(
    Array.from({ length: FUZZ_CONCURRENCY }, async () => {
      while (next < cases.length) {
        const r = await raw(port, cases[next++]!);
        if (r.reply.length > 0) answered += 1;
      }
    }),
  );
  const errors = ["malformed", "header_overflow", "headers_timeout", "h2_protocol", "h2_frame"].reduce((sum, reason) => sum + t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason }), 0);
  console.log(`    ${FUZZ_CASES} cases: ${answered} got bytes back; ${errors} counted as bad input`);
  assert.ok(errors >= FUZZ_CASES / 10, "bad input counted");
  const ok = await get(port, "/after-fuzz");
  assert.is(ok.status, 200);
  assert.is(ok.body, "a-1 GET /after-fuzz ");
  await waitFor("fuzz connections closed", () => t.metric("a", "fedgate_gateway_downstream_active_connections", { listener: LISTENER }) === 0);
});

bad("an upstream response framed both by Content-Length and chunked is refused, never relayed; the gateway keeps serving", async (ctx) => {
  const t = (ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, handshakeTimeoutMs: 1_000 }));
  const port = t.importPort("a");
  const hits = t.get("a").web[0]!.hits;
  const smuggled = await raw(port, `GET /smuggle HTTP/1.1\r\nHost: ${WEB_HOST}\r\n\r\nGET /next HTTP/1.1\r\nHost: ${WEB_HOST}\r\nConnection: close\r\n\r\n`, 10_000);
  assert.ok(t.get("a").web[0]!.hits > hits, "the backend was asked");
  assert.match(smuggled.reply, /^HTTP\/1\.1 50[23] /, "the client gets a gateway error for the bad response");
  assert.not.match(smuggled.reply, new RegExp(SMUGGLED_MARK), "the hidden response never reaches the client");
  assert.match(smuggled.reply, /a-1 GET \/next /, "the next request on the connection is answered by its own response");
  const ok = await get(port, "/after");
  assert.is(ok.status, 200);
  assert.is(ok.body, "a-1 GET /after ");
});

bad.run();
