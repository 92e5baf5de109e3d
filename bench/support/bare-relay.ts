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
});
export type BareRelayConfig = z.infer<typeof BareRelayConfig>;

function join(down: Socket, up: Socket): void {
  down.pipe(up);
  up.pipe(down);
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
}

function main(config: BareRelayConfig): void {
  const { target, listenTls } = config;
  const clientTls = target.tls && { cert: readFileSync(target.tls.pemFile), key: readFileSync(target.tls.pemFile), ca: readFileSync(target.tls.caFile), servername: target.tls.servername };
  const dial = (): Socket => (clientTls ? tlsConnect({ host: "127.0.0.1", port: target.port, ...clientTls, rejectUnauthorized: false }) : netConnect({ host: "127.0.0.1", port: target.port }));
  const onConnection = (down: Socket) => join(down, dial());
  const server = listenTls
    ? tlsServer({ cert: readFileSync(listenTls.pemFile), key: readFileSync(listenTls.pemFile), ca: readFileSync(listenTls.caFile), requestCert: true, rejectUnauthorized: true }, onConnection)
    : netServer(onConnection);
  server.listen(0, "127.0.0.1", () => console.log(`PORT ${(server.address() as { port: number }).port}`));
}

main(BareRelayConfig.parse(JSON.parse(process.argv[2] ?? "{}")));
