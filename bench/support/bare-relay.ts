/**
 * A bare Node relay, no fedgate code: the runtime floor the gateway-throughput
 * bench compares fedgate's pair with (REFERENCE §6, "naive Node pair"). Each
 * accepted connection is joined to a new one to `target` with `pipe` both ways.
 * Plain TCP, or mTLS on either side (`listenTls`: a server that verifies client
 * certificates; `target.tls`: a client presenting one, with SNI).
 * Prints `PORT <n>` once listening.
 *
 * Run: node --import tsx bench/support/bare-relay.ts '<BareRelayConfig as JSON>'
 */
import { readFileSync } from "node:fs";
import { connect as netConnect, createServer as netServer, type Socket } from "node:net";
import { connect as tlsConnect, createServer as tlsServer } from "node:tls";
import { z } from "zod";

const TlsFiles = z.object({ pemFile: z.string(), caFile: z.string() });
export const BareRelayConfig = z.object({
  listenTls: TlsFiles.optional(),
  target: z.object({ port: z.number().int(), tls: TlsFiles.extend({ servername: z.string() }).optional() }),
  /** Plain targets only: read the target into one reused buffer (`onread`), a fresh one only while a write still holds it. */
  reuseReadBuffer: z.boolean().default(false),
});
export type BareRelayConfig = z.input<typeof BareRelayConfig>;

const READ_BUFFER_BYTES = 64 * 1024;

function join(down: Socket, up: Socket): void {
  down.pipe(up);
  up.pipe(down);
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
}

/** Dials the plain target reading into a reused buffer and writes straight to `down`, which is paused/resumed as pipe would. */
function joinReusing(down: Socket, port: number): void {
  let buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  let held = false;
  const up = netConnect({
    host: "127.0.0.1",
    port,
    onread: {
      // Called after each read: a write that did not complete at once still holds the buffer.
      buffer: () => (held ? (buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES)) : buffer),
      callback: (n, buf) => {
        const ok = down.write(buf.subarray(0, n));
        held = down.writableLength > 0;
        return ok;
      },
    },
  });
  down.on("drain", () => up.resume());
  up.on("end", () => down.end());
  down.pipe(up);
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
}

function main(config: z.output<typeof BareRelayConfig>): void {
  const { target, listenTls } = config;
  const clientTls = target.tls && { cert: readFileSync(target.tls.pemFile), key: readFileSync(target.tls.pemFile), ca: readFileSync(target.tls.caFile), servername: target.tls.servername };
  const dial = (): Socket => (clientTls ? tlsConnect({ host: "127.0.0.1", port: target.port, ...clientTls, rejectUnauthorized: false }) : netConnect({ host: "127.0.0.1", port: target.port }));
  const onConnection = (down: Socket) => (config.reuseReadBuffer && !clientTls ? joinReusing(down, target.port) : join(down, dial()));
  const server = listenTls
    ? tlsServer({ cert: readFileSync(listenTls.pemFile), key: readFileSync(listenTls.pemFile), ca: readFileSync(listenTls.caFile), requestCert: true, rejectUnauthorized: true }, onConnection)
    : netServer(onConnection);
  server.listen(0, "127.0.0.1", () => console.log(`PORT ${(server.address() as { port: number }).port}`));
}

main(BareRelayConfig.parse(JSON.parse(process.argv[2] ?? "{}")));
