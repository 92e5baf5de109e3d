/**
 * The L7 gateway's per-request work in isolation (no TLS, no peer process), as
 * CPU µs per request of one process, each case in its own child process and
 * the rounds interleaved (A-B on a loaded machine):
 *   downstream whole / split: `H1ServerConnection` parsing keep-alive requests
 *     from 16 loopback clients (in the same process, so their CPU counts too)
 *     and answering a whole 2-byte body with `respondWhole` (one write) or with
 *     `respond` + `end` (cork, two writes, uncork: a writev);
 *   upstream: 32 pooled `H1Connection`s over fedgate-mux streams
 *     (`MuxStreamDuplex`) to an in-memory peer session that answers each
 *     request at once: request head out, response parsed, per exchange.
 * `--baseline <checkout>` also runs the upstream case from another checkout
 * (its own node_modules, e.g. `git archive <commit>` plus a node_modules link).
 *
 * Run: node --import tsx bench/l7-request-path.ts [--seconds 2] [--rounds 3] [--baseline <checkout>]
 */
import { execFileSync } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import path from "node:path";
import { Duplex, Readable } from "node:stream";
import { z } from "zod";
import type * as Internal from "../gateway/internal.ts";

const args = process.argv.slice(2);
const option = (name: string): string | undefined => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const SECONDS = Number(option("seconds") ?? 2);
const ROUNDS = Number(option("rounds") ?? 3);
const BASELINE = option("baseline");
const SELF = new URL(import.meta.url).pathname;
const ROOT = path.resolve(path.dirname(SELF), "..");
const DOWNSTREAM_CLIENTS = 16;
const UPSTREAM_CONNECTIONS = 32;
const REQUEST = Buffer.from("GET / HTTP/1.1\r\nHost: echo.demo.svc.clusterset.local\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n");
const RESPONSE = Buffer.from("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\ndate: Thu, 26 Nov 2026 07:00:00 GMT\r\n\r\nok");
const BODY = Buffer.from("ok");

const Result = z.object({ requests: z.number().int().positive(), cpuUs: z.number().positive() });
type Result = z.infer<typeof Result>;
type Case = "downstream-whole" | "downstream-split" | "upstream";

async function load(root: string): Promise<typeof Internal> {
  return (await import(path.join(root, "gateway/internal.ts"))) as typeof Internal;
}

/** Keep-alive requests from loopback clients to H1ServerConnections until the window ends. */
async function downstream(root: string, whole: boolean): Promise<Result> {
  const { H1ServerConnection } = await load(root);
  const server = createServer({ noDelay: true }, (socket: Socket) => {
    const conn = new H1ServerConnection({
      socket,
      maxHeadBytes: 16 * 1024,
      headTimeoutMs: 10_000,
      emptyBody: new Readable({ read: () => undefined }),
      onRequest: (down) => {
        const headers = { "content-type": "text/plain", "content-length": BODY.length, "x-fedgate-cluster": "b" };
        if (whole) return down.respondWhole(200, headers, BODY);
        down.respond(200, headers, false);
        down.end(undefined, BODY);
      },
      onBadInput: (reason) => {
        throw new Error(`bad input: ${reason}`);
      },
      onClose: () => undefined,
    });
    conn.start(Buffer.alloc(0));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  const until = performance.now() + SECONDS * 1000;
  let requests = 0;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from(
      { length: DOWNSTREAM_CLIENTS },
      () =>
        new Promise<void>((resolve) => {
          const c = connect(port, "127.0.0.1");
          c.setNoDelay(true);
          let got = "";
          c.on("data", (d: Buffer) => {
            got += d.toString("latin1");
            if (!got.endsWith("\r\n\r\nok")) return;
            got = "";
            requests++;
            if (performance.now() < until) return void c.write(REQUEST);
            c.destroy();
            resolve();
          });
          c.write(REQUEST);
        }),
    ),
  );
  const cpu = process.cpuUsage(before);
  server.close();
  return { requests, cpuUs: (cpu.user + cpu.system) / requests };
}

/** Two in-memory duplexes wired to each other. */
function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex | undefined) =>
    new Duplex({
      read: () => undefined,
      write(chunk: Buffer, _encoding, done) {
        peer()?.push(chunk);
        done();
      },
    });
  ends.push(make(() => ends[1]), make(() => ends[0]));
  return [ends[0]!, ends[1]!];
}

/** Exchanges on pooled H1Connections over tunnel streams, the peer answering each at once. */
async function upstream(root: string): Promise<Result> {
  const { H1Connection, MuxSession, MuxStreamDuplex, ReplayBody } = await load(root);
  const [a, b] = duplexPair();
  const client = new MuxSession({ socket: a, role: "client", maxStreams: 1024 });
  new MuxSession({
    socket: b,
    role: "server",
    maxStreams: 1024,
    onStream: (s) => {
      s.accept();
      s.attach({
        onData: (c) => {
          s.consumed(c.length);
          s.write(RESPONSE);
        },
        onEnd: () => undefined,
        onReset: () => undefined,
        onDrain: () => undefined,
      });
    },
  });
  const conns: InstanceType<typeof H1Connection>[] = [];
  for (let i = 0; i < UPSTREAM_CONNECTIONS; i++) conns.push(new H1Connection({ socket: new MuxStreamDuplex(await client.open("svc")), release: () => undefined }));
  const empty = new Readable({ read: () => undefined });
  const headers = { "user-agent": "wrk", accept: "*/*" };
  const until = performance.now() + SECONDS * 1000;
  let requests = 0;
  const before = process.cpuUsage();
  await Promise.all(
    conns.map(
      (conn) =>
        new Promise<void>((resolve) => {
          const next = (): void => {
            if (performance.now() >= until) return resolve();
            const body = new ReplayBody({ source: empty, capBytes: 64 * 1024, empty: true });
            conn.send({ method: "GET", path: "/", authority: "echo.demo.svc.clusterset.local", headers, framing: "none", body }, (r) => {
              if (!r.ok || !Buffer.isBuffer(r.response.body)) throw new Error("exchange failed");
              requests++;
              setImmediate(next);
            });
          };
          next();
        }),
    ),
  );
  const cpu = process.cpuUsage(before);
  return { requests, cpuUs: (cpu.user + cpu.system) / requests };
}

function runChild(kind: Case, root: string): Result {
  const out = execFileSync(process.execPath, ["--import", "tsx", SELF, "--child", kind, "--root", root, "--seconds", String(SECONDS)], { encoding: "utf8" });
  return Result.parse(JSON.parse(out.trim().split("\n").at(-1)!));
}

async function main(): Promise<void> {
  const child = option("child");
  if (child) {
    const root = option("root") ?? ROOT;
    const r = child === "upstream" ? await upstream(root) : await downstream(root, child === "downstream-whole");
    console.log(JSON.stringify(r));
    process.exit(0);
  }
  const cases: { name: string; kind: Case; root: string }[] = [
    { name: "downstream, whole response in one write (respondWhole)", kind: "downstream-whole", root: ROOT },
    { name: "downstream, respond + end (cork, writev)", kind: "downstream-split", root: ROOT },
    { name: "upstream pooled exchange over a tunnel stream", kind: "upstream", root: ROOT },
    ...(BASELINE ? [{ name: "upstream pooled exchange over a tunnel stream, --baseline", kind: "upstream" as const, root: path.resolve(BASELINE) }] : []),
  ];
  const results = new Map<string, Result[]>(cases.map((c) => [c.name, []]));
  for (let round = 0; round < ROUNDS; round++) for (const c of cases) results.get(c.name)!.push(runChild(c.kind, c.root));
  console.log(`\n${ROUNDS} interleaved rounds of ${SECONDS} s, one child process per run\n`);
  console.log("| case | requests per run | CPU µs per request, each round | mean |");
  console.log("|---|---:|---|---:|");
  for (const c of cases) {
    const rs = results.get(c.name)!;
    const mean = rs.reduce((s, r) => s + r.cpuUs, 0) / rs.length;
    console.log(`| ${c.name} | ${Math.round(rs.reduce((s, r) => s + r.requests, 0) / rs.length).toLocaleString("en")} | ${rs.map((r) => r.cpuUs.toFixed(2)).join(", ")} | ${mean.toFixed(2)} |`);
  }
}

await main();
