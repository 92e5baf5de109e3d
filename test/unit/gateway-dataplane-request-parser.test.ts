import { suite } from "uvu";
import * as assert from "uvu/assert";
import { DownstreamProtocolError, MAX_HEADER_BYTES, RequestParser, type RequestHead } from "../../gateway/internal.ts";
import { mutateHttp } from "../support/http-mutation.ts";
import { prng } from "../support/prng.ts";

interface Parsed {
  head: RequestHead;
  body: string;
  ended: boolean;
}

interface Outcome {
  requests: Parsed[];
  /** The answer a refused request gets, and the metric reason. */
  error?: { status: number; reason: string };
}

/** Feeds `input` in the given pieces as a connection does: after a request ended, the bytes left over start the next one. */
function parse(input: Buffer, cuts: readonly number[] = []): Outcome {
  const out: Outcome = { requests: [] };
  let current: Parsed | undefined;
  const parser = new RequestParser({
    maxHeadBytes: MAX_HEADER_BYTES,
    onHead: (head) => out.requests.push((current = { head, body: "", ended: false })),
    onBody: (chunk) => (current!.body += chunk.toString("latin1")),
    onEnd: () => (current!.ended = true),
  });
  const bounds = [0, ...cuts, input.length];
  try {
    for (let i = 1; i < bounds.length; i++) {
      let data: Buffer | undefined = input.subarray(bounds[i - 1], bounds[i]);
      while (data && data.length > 0) {
        data = parser.execute(data);
        if (data) parser.reset();
      }
      if (parser.done) parser.reset();
    }
  } catch (err) {
    if (!(err instanceof DownstreamProtocolError)) throw err;
    out.error = { status: err.status, reason: err.reason };
  }
  return out;
}

const b = (text: string) => Buffer.from(text, "latin1");
const H = "Host: web.demo\r\n";

const valid: { name: string; input: string; expect: { method: string; target: string; http11: boolean; keepAlive: boolean; framing: RequestHead["framing"]; body: string; expectContinue?: boolean; headers?: Record<string, string> }[] }[] = [
  { name: "a GET with no body", input: `GET /a?b=c HTTP/1.1\r\n${H}X-A: b\r\n\r\n`, expect: [{ method: "GET", target: "/a?b=c", http11: true, keepAlive: true, framing: "none", body: "", headers: { host: "web.demo", "x-a": "b" } }] },
  {
    name: "optional whitespace around field values is trimmed, inner whitespace kept",
    input: `POST /w HTTP/1.1\r\n${H}X-A: \t a \t b\t \r\nX-Empty: \t \r\nContent-Length:\t 2 , 2 \r\n\r\nok`,
    expect: [{ method: "POST", target: "/w", http11: true, keepAlive: true, framing: "length", body: "ok", headers: { host: "web.demo", "x-a": "a \t b", "x-empty": "", "content-length": "2 , 2" } }],
  },
  { name: "a Content-Length body", input: `POST /p HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`, expect: [{ method: "POST", target: "/p", http11: true, keepAlive: true, framing: "length", body: "hello" }] },
  { name: "Content-Length: 0 is no body", input: `POST /p HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`, expect: [{ method: "POST", target: "/p", http11: true, keepAlive: true, framing: "none", body: "" }] },
  { name: "a chunked body with extensions and trailers (dropped)", input: `PUT /c HTTP/1.1\r\n${H}Transfer-Encoding: Chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n`, expect: [{ method: "PUT", target: "/c", http11: true, keepAlive: true, framing: "chunked", body: "abcde" }] },
  { name: "identical repeated Content-Lengths", input: `POST /p HTTP/1.1\r\n${H}Content-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc`, expect: [{ method: "POST", target: "/p", http11: true, keepAlive: true, framing: "length", body: "abc" }] },
  { name: "HTTP/1.0 closes by default", input: `GET / HTTP/1.0\r\n${H}\r\n`, expect: [{ method: "GET", target: "/", http11: false, keepAlive: false, framing: "none", body: "" }] },
  { name: "HTTP/1.0 with keep-alive", input: `GET / HTTP/1.0\r\n${H}Connection: Keep-Alive\r\n\r\n`, expect: [{ method: "GET", target: "/", http11: false, keepAlive: true, framing: "none", body: "" }] },
  { name: "HTTP/1.1 with connection: close", input: `GET / HTTP/1.1\r\n${H}Connection: upgrade, close\r\n\r\n`, expect: [{ method: "GET", target: "/", http11: true, keepAlive: false, framing: "none", body: "" }] },
  { name: "empty lines before the request line", input: `\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`, expect: [{ method: "GET", target: "/", http11: true, keepAlive: true, framing: "none", body: "" }] },
  { name: "Expect: 100-continue with a body", input: `POST /e HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nok`, expect: [{ method: "POST", target: "/e", http11: true, keepAlive: true, framing: "length", body: "ok", expectContinue: true }] },
  {
    name: "pipelined requests, each with its own body, in order",
    input: `POST /1 HTTP/1.1\r\n${H}Content-Length: 1\r\n\r\naPOST /2 HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\nGET /3 HTTP/1.1\r\n${H}\r\n`,
    expect: [
      { method: "POST", target: "/1", http11: true, keepAlive: true, framing: "length", body: "a" },
      { method: "POST", target: "/2", http11: true, keepAlive: true, framing: "chunked", body: "b" },
      { method: "GET", target: "/3", http11: true, keepAlive: true, framing: "none", body: "" },
    ],
  },
];

const parsing = suite("RequestParser: strict HTTP/1.1 requests from downstream clients");

for (const c of valid) {
  parsing(`parses: ${c.name} (whole, and cut at every byte)`, () => {
    const input = b(c.input);
    for (let cut = 0; cut <= input.length; cut++) {
      const out = parse(input, [cut]);
      assert.is(out.error, undefined, `cut at ${cut}`);
      assert.is(out.requests.length, c.expect.length, `cut at ${cut}`);
      c.expect.forEach((e, i) => {
        const got = out.requests[i]!;
        assert.equal(
          { method: got.head.method, target: got.head.target, http11: got.head.http11, keepAlive: got.head.keepAlive, framing: got.head.framing, body: got.body, expectContinue: got.head.expectContinue },
          { method: e.method, target: e.target, http11: e.http11, keepAlive: e.keepAlive, framing: e.framing, body: e.body, expectContinue: e.expectContinue ?? false },
          `request ${i}, cut at ${cut}`,
        );
        assert.ok(got.ended, `request ${i} ended, cut at ${cut}`);
        for (const [k, v] of Object.entries(e.headers ?? {})) assert.is(got.head.headers[k], v, k);
      });
    }
  });
}

const invalid: { name: string; input: string; status: number }[] = [
  { name: "both Transfer-Encoding and Content-Length (smuggling)", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n`, status: 400 },
  { name: "Transfer-Encoding in an HTTP/1.0 request", input: `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, status: 400 },
  { name: "chunked given twice", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, status: 400 },
  { name: "chunked not the last coding", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n`, status: 400 },
  { name: "a transfer coding other than chunked", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, status: 501 },
  { name: "differing Content-Lengths", input: `POST / HTTP/1.1\r\n${H}Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc`, status: 400 },
  { name: "a signed Content-Length", input: `POST / HTTP/1.1\r\n${H}Content-Length: +2\r\n\r\nab`, status: 400 },
  { name: "a Content-Length that is not a number", input: `POST / HTTP/1.1\r\n${H}Content-Length: 0x2\r\n\r\nab`, status: 400 },
  { name: "two Host fields", input: `GET / HTTP/1.1\r\n${H}Host: other\r\n\r\n`, status: 400 },
  { name: "a bare LF line end in a whole head", input: `GET / HTTP/1.1\r\nX: y\n${H}\r\n`, status: 400 },
  { name: "a head with bare LF line ends only", input: `GET / HTTP/1.1\nHost: web.demo\n\n`, status: 400 },
  { name: "a bare CR in a value", input: `GET / HTTP/1.1\r\nX: a\rb\r\n${H}\r\n`, status: 400 },
  { name: "obs-fold", input: `GET / HTTP/1.1\r\n${H}X: a\r\n b\r\n\r\n`, status: 400 },
  { name: "whitespace before the colon", input: `GET / HTTP/1.1\r\nHost : web.demo\r\n\r\n`, status: 400 },
  { name: "an empty field name", input: `GET / HTTP/1.1\r\n${H}: x\r\n\r\n`, status: 400 },
  { name: "a control character in a value", input: `GET / HTTP/1.1\r\n${H}X: a\x00b\r\n\r\n`, status: 400 },
  { name: "whitespace in the request-target", input: `GET /a b HTTP/1.1\r\n${H}\r\n`, status: 400 },
  { name: "two spaces in the request line", input: `GET  / HTTP/1.1\r\n${H}\r\n`, status: 400 },
  { name: "a lower-case protocol name", input: `GET / http/1.1\r\n${H}\r\n`, status: 400 },
  { name: "a control character in the method", input: `G\x01T / HTTP/1.1\r\n${H}\r\n`, status: 400 },
  { name: "HTTP/2.0 in a request line", input: `GET / HTTP/2.0\r\n${H}\r\n`, status: 505 },
  { name: "HTTP/1.2", input: `GET / HTTP/1.2\r\n${H}\r\n`, status: 505 },
  { name: "an expectation other than 100-continue", input: `POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 1\r\n\r\na`, status: 417 },
  { name: "a chunk size with a 0x prefix", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n`, status: 400 },
  { name: "chunk data longer than its size", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n`, status: 400 },
  { name: "an oversized chunk size", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000000\r\n`, status: 400 },
  { name: "a head over the limit", input: `GET / HTTP/1.1\r\n${H}X: ${"a".repeat(MAX_HEADER_BYTES)}\r\n\r\n`, status: 431 },
  { name: "a trailer section over the limit", input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX: ${"a".repeat(MAX_HEADER_BYTES)}\r\n\r\n`, status: 431 },
];

for (const c of invalid) {
  parsing(`refuses ${c.name} with ${c.status}, whole and cut at every byte`, () => {
    const input = b(c.input);
    for (let cut = 0; cut <= input.length; cut += Math.max(1, Math.floor(input.length / 200))) {
      const out = parse(input, [cut]);
      assert.is(out.error?.status, c.status, `cut at ${cut}`);
      assert.ok(out.requests.every((r) => r.head.framing === "none" || !r.ended), `a refused body never ends as whole, cut at ${cut}`);
    }
  });
}

parsing("a head over the limit is refused before its end arrives, and counted as header_overflow", () => {
  const parser = new RequestParser({ maxHeadBytes: MAX_HEADER_BYTES, onHead: () => assert.unreachable("no head"), onBody: () => undefined, onEnd: () => undefined });
  const err = (() => {
    try {
      parser.execute(b(`GET / HTTP/1.1\r\nX: ${"a".repeat(MAX_HEADER_BYTES)}`));
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.instance(err, DownstreamProtocolError);
  assert.is((err as DownstreamProtocolError).reason, "header_overflow");
});

const SEEDS = 3000;
const BASES = valid.map((c) => b(c.input));

parsing(`fuzz: ${SEEDS} mutated requests (seeded) give the same outcome whole or in random pieces; only typed errors; a Content-Length body is exact`, () => {
  let refused = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const rand = prng(seed);
    const input = mutateHttp(BASES[seed % BASES.length]!, rand);
    const cuts = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Math.floor(rand() * input.length)).sort((x, y) => x - y);
    const whole = parse(input);
    const pieces = parse(input, cuts);
    assert.equal(pieces, whole, `seed ${seed}: ${JSON.stringify(input.toString("latin1"))}`);
    if (whole.error) refused += 1;
    for (const r of whole.requests) {
      const cl = r.head.headers["content-length"];
      if (r.ended && cl !== undefined) assert.is(r.body.length, Number(cl.split(",")[0]), `seed ${seed}`);
      assert.not.ok(cl !== undefined && r.head.headers["transfer-encoding"] !== undefined, `seed ${seed}: never both framings`);
    }
  }
  assert.ok(refused > SEEDS / 10, `${refused} refused: the mutations reach the checks`);
  assert.ok(refused < SEEDS, "some mutations are still valid requests");
});

parsing.run();
