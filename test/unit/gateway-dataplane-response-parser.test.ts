import type { IncomingHttpHeaders } from "node:http";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { MAX_RESPONSE_HEAD_BYTES, ResponseParser, UpstreamProtocolError, type ResponseHead } from "../../gateway/internal.ts";
import { mutateHttp } from "../support/http-mutation.ts";
import { prng } from "../support/prng.ts";

interface Outcome {
  head?: ResponseHead;
  body: string;
  ended: boolean;
  trailers?: IncomingHttpHeaders;
  trailing: boolean;
  error?: string;
}

/** Feeds `input` in the given pieces (then EOF when `eof`), recording what the parser reported. */
function parse(input: Buffer, options: { cuts?: number[]; eof?: boolean; headRequest?: boolean } = {}): Outcome {
  const out: Outcome = { body: "", ended: false, trailing: false };
  const parser = new ResponseParser({
    onHead: (head) => (out.head = head),
    onBody: (chunk) => (out.body += chunk.toString("latin1")),
    onEnd: (trailers) => {
      out.ended = true;
      out.trailers = trailers;
    },
  });
  parser.reset(options.headRequest ?? false);
  const bounds = [0, ...(options.cuts ?? []), input.length];
  try {
    for (let i = 1; i < bounds.length; i++) if (bounds[i]! > bounds[i - 1]!) parser.execute(input.subarray(bounds[i - 1], bounds[i]));
    if (options.eof) parser.finish();
  } catch (err) {
    if (!(err instanceof UpstreamProtocolError)) throw err;
    out.error = err.code;
  }
  out.trailing = parser.trailing;
  return out;
}

const r = (text: string) => Buffer.from(text, "latin1");

const valid: { name: string; input: string; eof?: boolean; headRequest?: boolean; expect: { status: number; keepAlive: boolean; body: string; headers?: IncomingHttpHeaders; trailers?: IncomingHttpHeaders } }[] = [
  { name: "Content-Length body", input: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello", expect: { status: 200, keepAlive: true, body: "hello", headers: { "content-length": "5", "x-a": "b" } } },
  { name: "chunked body with extensions and trailers", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\ngrpc-status: 0\r\n\r\n", expect: { status: 200, keepAlive: true, body: "abcde", trailers: { "grpc-status": "0" } } },
  { name: "no framing: the body runs until close, and the connection is not reused", input: "HTTP/1.1 200 OK\r\n\r\nuntil close", eof: true, expect: { status: 200, keepAlive: false, body: "until close" } },
  { name: "204 has no body whatever its Content-Length", input: "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", expect: { status: 204, keepAlive: true, body: "" } },
  { name: "a HEAD answer has no body", input: "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", headRequest: true, expect: { status: 200, keepAlive: true, body: "" } },
  { name: "100 Continue is skipped", input: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", expect: { status: 201, keepAlive: true, body: "ok" } },
  { name: "HTTP/1.0 and connection: close are not reused", input: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", expect: { status: 200, keepAlive: false, body: "ok" } },
  { name: "connection: close", input: "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", expect: { status: 200, keepAlive: false, body: "" } },
  { name: "repeated fields are joined, set-cookie kept as a list, identical Content-Lengths accepted", input: "HTTP/1.1 200\r\nVia: a\r\nvia: b\r\nSet-Cookie: x=1\r\nSet-Cookie: y=2\r\nContent-Length: 2, 2\r\n\r\nok", expect: { status: 200, keepAlive: true, body: "ok", headers: { via: "a, b", "set-cookie": ["x=1", "y=2"], "content-length": "2, 2" } } },
];

const parsing = suite("ResponseParser: strict HTTP/1.1 responses from upstreams");

for (const c of valid) {
  parsing(`parses: ${c.name} (whole, and cut at every byte)`, () => {
    const input = r(c.input);
    for (let cut = 0; cut <= input.length; cut++) {
      const out = parse(input, { cuts: [cut], eof: c.eof, headRequest: c.headRequest });
      assert.is(out.error, undefined, `cut at ${cut}`);
      assert.is(out.head?.status, c.expect.status, `cut at ${cut}`);
      assert.is(out.head?.keepAlive, c.expect.keepAlive);
      assert.is(out.body, c.expect.body, `cut at ${cut}`);
      assert.ok(out.ended, `ended, cut at ${cut}`);
      assert.not.ok(out.trailing);
      for (const [k, v] of Object.entries(c.expect.headers ?? {})) assert.equal(out.head?.headers[k], v, k);
      if (c.expect.trailers) assert.equal(out.trailers, c.expect.trailers);
    }
  });
}

const invalid: { name: string; input: string; eof?: boolean }[] = [
  { name: "both Transfer-Encoding and Content-Length (smuggling)", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" },
  { name: "a transfer coding other than chunked", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" },
  { name: "chunked given twice", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" },
  { name: "differing Content-Lengths", input: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc" },
  { name: "a signed Content-Length", input: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nab" },
  { name: "a bare LF line end", input: "HTTP/1.1 200 OK\r\nContent-Length: 2\nX: y\r\n\r\nab" },
  { name: "obs-fold", input: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n" },
  { name: "whitespace before the colon", input: "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nab" },
  { name: "a control character in a value", input: "HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 0\r\n\r\n" },
  { name: "a bad status line", input: "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n" },
  { name: "a protocol switch", input: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n" },
  { name: "a chunk size with a 0x prefix", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n" },
  { name: "chunk data longer than its size", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n" },
  { name: "an oversized chunk size", input: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n" },
  { name: "a body cut short by the close", input: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", eof: true },
  { name: "a head cut short by the close", input: "HTTP/1.1 200 OK\r\nContent-Le", eof: true },
  { name: "a head over the limit", input: `HTTP/1.1 200 OK\r\nX: ${"a".repeat(MAX_RESPONSE_HEAD_BYTES)}\r\n\r\n` },
  { name: "a trailer section over the limit", input: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: ${"a".repeat(MAX_RESPONSE_HEAD_BYTES)}\r\n\r\n` },
];

for (const c of invalid) {
  parsing(`refuses ${c.name}, whole and cut at every byte`, () => {
    const input = r(c.input);
    for (let cut = 0; cut <= input.length; cut += Math.max(1, Math.floor(input.length / 200))) {
      const out = parse(input, { cuts: [cut], eof: c.eof });
      assert.is(out.error, "FEDGATE_GATEWAY_UPSTREAM_PROTOCOL", `cut at ${cut}`);
      assert.not.ok(out.ended, `never reported as a whole response, cut at ${cut}`);
    }
  });
}

parsing("bytes after the response are noticed (the connection must not be reused)", () => {
  const out = parse(r("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"));
  assert.ok(out.ended);
  assert.is(out.body, "ok");
  assert.ok(out.trailing);
});

const SEEDS = 3000;
const BASES = valid.map((c) => r(c.input));

parsing(`fuzz: ${SEEDS} mutated responses (seeded) give the same outcome whole or in random pieces; only typed errors; a Content-Length body is exact`, () => {
  let refused = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const rand = prng(seed);
    const input = mutateHttp(BASES[seed % BASES.length]!, rand);
    const cuts = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Math.floor(rand() * input.length)).sort((a, b) => a - b);
    const whole = parse(input, { eof: true });
    const pieces = parse(input, { cuts, eof: true });
    assert.equal(pieces, whole, `seed ${seed}: ${JSON.stringify(input.toString("latin1"))}`);
    if (whole.error) refused += 1;
    const head = whole.head;
    const cl = head?.headers["content-length"];
    if (!whole.error && head && cl !== undefined && head.headers["transfer-encoding"] === undefined && head.status !== 204 && head.status !== 304) assert.is(whole.body.length, Number(cl.split(",")[0]), `seed ${seed}`);
  }
  assert.ok(refused > SEEDS / 10, `${refused} refused: the mutations reach the checks`);
  assert.ok(refused < SEEDS, "some mutations are still valid responses");
});

parsing.run();
