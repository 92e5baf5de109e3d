import { duplexPair } from "node:stream";
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { MuxSession, probeThroughPeer, type MuxStream } from "../../gateway/internal.ts";

const HTTP = { path: "/healthz", host: "", expectedStatuses: [{ start: 200, end: 300 }] };
const TIMEOUT_MS = 300;

/**
 * A tunnel whose far side plays the peer gateway: `answer` gets each accepted
 * stream and what arrived on it; `refuse` resets every open instead.
 */
function tunnel(peer: { answer?: (stream: MuxStream) => void; refuse?: boolean }): { client: MuxSession; requests: string[] } {
  const [near, far] = duplexPair();
  const requests: string[] = [];
  new MuxSession({
    socket: far,
    role: "server",
    maxStreams: 8,
    onStream: (stream) => {
      if (peer.refuse) return stream.reset("no_healthy_upstream");
      stream.accept();
      let seen = "";
      stream.attach({
        onData: (chunk) => {
          seen += chunk.toString("latin1");
          if (!seen.endsWith("\r\n\r\n")) return;
          requests.push(seen);
          peer.answer?.(stream);
        },
        onEnd: () => undefined,
        onReset: () => undefined,
        onDrain: () => undefined,
      });
    },
  });
  return { client: new MuxSession({ socket: near, role: "client", maxStreams: 8 }), requests };
}

function check(client: MuxSession): Promise<boolean> {
  return probeThroughPeer({ open: async () => ({ kind: "stream", stream: await client.open("svc") }), http: HTTP, host: "10.0.0.1:15443", timeoutMs: TIMEOUT_MS });
}

const answers = (...pieces: string[]) => (stream: MuxStream) => {
  for (const p of pieces) stream.write(Buffer.from(p, "latin1"));
};

const probe = suite("HTTP health check through a peer gateway, on a tunnel stream");

const cases: { name: string; peer: { answer?: (stream: MuxStream) => void; refuse?: boolean }; expect: boolean }[] = [
  { name: "200 passes", peer: { answer: answers("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n") }, expect: true },
  { name: "a status line in three pieces (204) passes", peer: { answer: answers("HTT", "P/1.1 20", "4 No Content\r\n\r\n") }, expect: true },
  { name: "a status line without a reason phrase passes", peer: { answer: answers("HTTP/1.0 200\r\n\r\n") }, expect: true },
  { name: "503 fails", peer: { answer: answers("HTTP/1.1 503 Service Unavailable\r\n\r\n") }, expect: false },
  { name: "not HTTP fails", peer: { answer: answers("SSH-2.0-OpenSSH_9.6\r\n") }, expect: false },
  { name: "a status line that never ends fails", peer: { answer: answers("HTTP/1.1 200 ".padEnd(2_000, "x")) }, expect: false },
  { name: "the stream ended without an answer fails", peer: { answer: (s) => s.end() }, expect: false },
  { name: "a peer that refuses the stream (no endpoint) fails", peer: { refuse: true }, expect: false },
  { name: "silence fails at the timeout", peer: {}, expect: false },
];

for (const c of cases) {
  probe(c.name, async () => {
    const { client, requests } = tunnel(c.peer);
    assert.is(await check(client), c.expect);
    if (!c.peer.refuse) assert.equal(requests, ["GET /healthz HTTP/1.1\r\nhost: 10.0.0.1:15443\r\nuser-agent: fedgate-health-check\r\nconnection: close\r\n\r\n"]);
    client.destroy();
  });
}

probe("the configured Host wins over the endpoint's address", async () => {
  const { client, requests } = tunnel({ answer: answers("HTTP/1.1 200 OK\r\n\r\n") });
  assert.ok(await probeThroughPeer({ open: async () => ({ kind: "stream", stream: await client.open("svc") }), http: { ...HTTP, host: "web.demo.svc.clusterset.local" }, host: "10.0.0.1:15443", timeoutMs: TIMEOUT_MS }));
  assert.match(requests[0]!, /\r\nhost: web\.demo\.svc\.clusterset\.local\r\n/);
  client.destroy();
});

probe("an open slower than the timeout fails the check, and the link it brings later is dropped", async () => {
  const { client } = tunnel({ answer: answers("HTTP/1.1 200 OK\r\n\r\n") });
  let opened: MuxStream | undefined;
  const ok = await probeThroughPeer({
    open: async () => {
      await new Promise((r) => setTimeout(r, TIMEOUT_MS * 2));
      opened = await client.open("svc");
      return { kind: "stream", stream: opened };
    },
    http: HTTP,
    host: "10.0.0.1:15443",
    timeoutMs: TIMEOUT_MS,
  });
  assert.is(ok, false);
  await new Promise((r) => setTimeout(r, TIMEOUT_MS * 2));
  assert.ok(opened?.closed, "the late stream was reset");
  client.destroy();
});

probe.run();
