import { Agent, request as h1request, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { ProtoRegistry } from "../../gateway/index.ts";
import { KEEP_ALIVE_IDLE_TIMEOUT_MS } from "../../gateway/internal.ts";
import { createClusterSetPki } from "../support/clusterset-pki.ts";
import { waitFor } from "../support/gateway-harness.ts";
import { L7Topology, raw, WEB_HOST } from "../support/l7-harness.ts";

const pki = await createClusterSetPki(["a"]);
const registry = ProtoRegistry.load();
const LISTENER = "fedgate-import-9000";
const H = `Host: ${WEB_HOST}\r\n`;

interface Reply {
  status: number;
  body: Buffer;
  headers: IncomingHttpHeaders;
  /** The client saw `100 Continue`. */
  continued: boolean;
}

/** One request with Node's HTTP client; `chunks` are written one by one (no Content-Length: chunked), after `100 Continue` when `expectContinue`. */
function send(port: number, options: { agent: Agent; path: string; method?: string; chunks?: Buffer[]; expectContinue?: boolean; host?: string }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    let continued = false;
    const headers: Record<string, string> = { host: options.host ?? WEB_HOST };
    if (options.expectContinue) headers.expect = "100-continue";
    const req = h1request({ host: "127.0.0.1", port, path: options.path, method: options.method ?? "GET", agent: options.agent, headers }, (res) => {
      const body: Buffer[] = [];
      res.on("data", (c: Buffer) => body.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(body), headers: res.headers, continued }));
      res.on("error", reject);
    });
    req.on("error", reject);
    const writeBody = () => {
      for (const c of options.chunks ?? []) req.write(c);
      req.end();
    };
    if (options.expectContinue) {
      req.on("continue", () => {
        continued = true;
        writeBody();
      });
      req.flushHeaders();
    } else writeBody();
  });
}

/** The responses in a raw reply, split at each status line. */
function responses(reply: string): string[] {
  return reply.split(/(?=HTTP\/1\.1 \d{3} )/).filter(Boolean);
}

interface Ctx {
  topology?: L7Topology;
}

const h1 = suite<Ctx>("gateway HTTP/1.1 downstream server: real clients, keep-alive, pipelining, chunked uploads", {});

h1.before(async (ctx) => {
  ctx.topology = await L7Topology.start({ pki, registry, exporters: ["a"], members: { a: 1 }, handshakeTimeoutMs: 2_000 });
});

h1.after(async (ctx) => {
  await ctx.topology?.close();
});

h1("Node's client: keep-alive requests, a chunked upload, a 200 KiB chunked upload streamed back, Expect: 100-continue, and a local 404 all share one connection", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const before = t.metric("a", "fedgate_gateway_downstream_connections_total", { listener: LISTENER });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const first = await send(port, { agent, path: "/k1" });
    assert.is(first.status, 200);
    assert.is(first.body.toString(), "a-1 GET /k1 ");
    assert.is(first.headers["x-fedgate-cluster"], "a");
    const chunked = await send(port, { agent, path: "/up", method: "POST", chunks: [Buffer.from("ab"), Buffer.from("cd"), Buffer.from("e")] });
    assert.is(chunked.body.toString(), "a-1 POST /up abcde");
    // Past the replay buffer (64 KiB): the body streams to the upstream, and its echo streams back (chunked).
    const big = Buffer.alloc(200 * 1024, "x");
    const bigReply = await send(port, { agent, path: "/big", method: "PUT", chunks: [big.subarray(0, 70_000), big.subarray(70_000)] });
    assert.is(bigReply.status, 200);
    assert.is(bigReply.body.length, "a-1 PUT /big ".length + big.length);
    assert.ok(bigReply.body.subarray("a-1 PUT /big ".length).equals(big), "the echo is the upload, byte for byte");
    const expect = await send(port, { agent, path: "/ex", method: "POST", chunks: [Buffer.from("after-continue")], expectContinue: true });
    assert.ok(expect.continued, "the client was told to go on");
    assert.is(expect.body.toString(), "a-1 POST /ex after-continue");
    const notFound = await send(port, { agent, path: "/x", host: "nowhere.example" });
    assert.is(notFound.status, 404);
    const after = await send(port, { agent, path: "/k2", method: "HEAD" });
    assert.is(after.status, 200);
    assert.is(after.body.length, 0, "a HEAD answer has no body");
    assert.is(t.metric("a", "fedgate_gateway_downstream_connections_total", { listener: LISTENER }) - before, 1, "one connection for all of them");
  } finally {
    agent.destroy();
  }
});

h1("pipelined requests (GET, Content-Length and chunked POSTs, HEAD) are answered in order on one connection; connection: close ends it", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const pipeline = [
    `GET /p1 HTTP/1.1\r\n${H}\r\n`,
    `POST /p2 HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyz`,
    `POST /p3 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n`,
    `HEAD /p4 HTTP/1.1\r\n${H}\r\n`,
    `GET /p5 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
  ].join("");
  const r = await raw(port, pipeline, 20_000);
  assert.ok(r.closedByGateway, "closed after the request that asked for it");
  const parts = responses(r.reply);
  assert.is(parts.length, 5, r.reply);
  assert.match(parts[0]!, /\r\n\r\na-1 GET \/p1 $/);
  assert.match(parts[1]!, /\r\n\r\na-1 POST \/p2 xyz$/);
  assert.match(parts[2]!, /\r\n\r\na-1 POST \/p3 abc$/);
  assert.match(parts[3]!, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(parts[3]!.endsWith("\r\n\r\n"), `a HEAD answer has no body: ${JSON.stringify(parts[3])}`);
  assert.match(parts[4]!, /\r\nconnection: close\r\n/);
  assert.match(parts[4]!, /\r\n\r\na-1 GET \/p5 $/);
});

h1("HTTP/1.0: closed after the answer unless keep-alive was asked; a streamed answer is delimited by the close", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const plain = await raw(port, `GET /old HTTP/1.0\r\n${H}\r\n`, 20_000);
  assert.ok(plain.closedByGateway);
  assert.match(plain.reply, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(plain.reply, /\r\n\r\na-1 GET \/old $/);
  const kept = await raw(port, `GET /ka1 HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\nGET /ka2 HTTP/1.0\r\n${H}\r\n`, 20_000);
  const parts = responses(kept.reply);
  assert.is(parts.length, 2, kept.reply);
  assert.match(parts[0]!, /\r\nconnection: keep-alive\r\n/);
  assert.match(parts[1]!, /a-1 GET \/ka2 $/);
  assert.ok(kept.closedByGateway);
  // 100 KiB echoed: it comes back in pieces, with no chunked framing for an HTTP/1.0 client.
  const body = "y".repeat(100 * 1024);
  const streamed = await raw(port, `POST /old-big HTTP/1.0\r\n${H}Content-Length: ${body.length}\r\n\r\n${body}`, 20_000);
  assert.ok(streamed.closedByGateway);
  assert.not.match(streamed.reply, /transfer-encoding/i);
  assert.ok(streamed.reply.endsWith(`a-1 POST /old-big ${body}`));
});

h1("a large answer streams chunked to an HTTP/1.1 client; the next request's head, stalled, gets 408 and the connection is closed", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const timeouts = () => t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason: "headers_timeout" });
  const before = timeouts();
  const body = "z".repeat(150 * 1024);
  const r = await raw(port, `POST /chunked-back HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\n\r\n${body}GET /stalled HTTP/1.1\r\n${H}`, 20_000);
  assert.ok(r.closedByGateway);
  const parts = responses(r.reply);
  assert.is(parts.length, 2, r.reply.slice(0, 300));
  assert.match(parts[0]!, /\r\ntransfer-encoding: chunked\r\n/);
  const head = parts[0]!.split("\r\n\r\n", 1)[0]!;
  assert.not.match(head, /content-length/i);
  // Undo the chunk framing: the echo is whole and the last chunk ends it.
  let decoded = "";
  let rest = parts[0]!.slice(head.length + 4);
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const size = parseInt(rest.slice(0, eol), 16);
    if (size === 0) break;
    decoded += rest.slice(eol + 2, eol + 2 + size);
    rest = rest.slice(eol + 2 + size + 2);
  }
  assert.is(decoded, `a-1 POST /chunked-back ${body}`);
  assert.is(rest, "0\r\n\r\n", "the last chunk, no trailers");
  assert.match(parts[1]!, /^HTTP\/1\.1 408 /);
  assert.is(timeouts() - before, 1);
});

h1("a request framed two ways, or with a coding nothing decodes, is refused before it reaches the backend; the connection is closed", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const backend = t.get("a").web[0]!;
  const hits = backend.hits;
  const malformed = () => t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason: "malformed" });
  const before = malformed();
  const both = await raw(port, `POST /te-cl HTTP/1.1\r\n${H}Content-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hidden HTTP/1.1\r\n${H}\r\n`, 20_000);
  assert.match(both.reply, /^HTTP\/1\.1 400 /);
  assert.is(responses(both.reply).length, 1, "the hidden request is never answered");
  assert.ok(both.closedByGateway);
  const gzip = await raw(port, `POST /gz HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 20_000);
  assert.match(gzip.reply, /^HTTP\/1\.1 501 /);
  const cl = await raw(port, `POST /cl HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`, 20_000);
  assert.match(cl.reply, /^HTTP\/1\.1 400 /);
  // Head and bad chunk in one write: refused before anything was handed on, so it is answered.
  const badChunk = await raw(port, `POST /chunk HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n`, 20_000);
  assert.match(badChunk.reply, /^HTTP\/1\.1 400 /);
  assert.ok(badChunk.closedByGateway);
  assert.is(backend.hits, hits, "the backend saw none of them (the bad chunk's request never completed)");
  assert.is(malformed() - before, 3);
  assert.is(t.metric("a", "fedgate_gateway_http_downstream_errors_total", { listener: LISTENER, reason: "unsupported" }), 1);
});

h1("an idle keep-alive connection is closed by the gateway; one with a request in flight is not", async (ctx) => {
  const t = ctx.topology!;
  const port = t.importPort("a");
  const socket = connect({ host: "127.0.0.1", port });
  let reply = "";
  socket.on("data", (c: Buffer) => (reply += c.toString("latin1")));
  const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
  await new Promise<void>((resolve) => socket.on("connect", resolve));
  // Longer than the idle timeout: the request in flight keeps the connection open.
  socket.write(`GET /slow/${KEEP_ALIVE_IDLE_TIMEOUT_MS + 1_500} HTTP/1.1\r\n${H}\r\n`);
  await waitFor("the slow answer", () => reply.includes("a-1 GET /slow/"), 30_000);
  const answeredAt = Date.now();
  const closedAt = await closed;
  assert.ok(closedAt - answeredAt >= KEEP_ALIVE_IDLE_TIMEOUT_MS - 1_000, `closed ${closedAt - answeredAt} ms after the answer`);
  assert.is(responses(reply).length, 1);
});

h1.run();
