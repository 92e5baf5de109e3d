/**
 * Child process: a real grpc-js-xds client. grpc-js-xds reads its bootstrap
 * once per process (GRPC_XDS_BOOTSTRAP_CONFIG), so every test client runs in
 * its own process. Calls `xds:///<target>` every INTERVAL ms and prints one
 * JSON line per finished call: { ok, server?, peer?, code?, details?, t }.
 * Usage: node --import tsx xds-echo-client-child.ts <target> <insecure|xds-creds>
 */
import * as grpc from "@grpc/grpc-js";
import xds from "@grpc/grpc-js-xds";
import { ECHO_PATH } from "./xds-echo.ts";

const INTERVAL_MS = 10;
const [target = "echo", mode = "insecure"] = process.argv.slice(2);
xds.register();
const credentials = mode === "xds-creds" ? new xds.XdsChannelCredentials(grpc.credentials.createInsecure()) : grpc.credentials.createInsecure();
const client = new grpc.Client(`xds:///${target}`, credentials);
let running = true;
let inFlight = 0;

function once(): void {
  inFlight += 1;
  client.makeUnaryRequest(
    ECHO_PATH,
    (b: Buffer) => b,
    (b: Buffer) => b,
    Buffer.from("ping"),
    { deadline: Date.now() + 5_000 },
    (error, reply) => {
      inFlight -= 1;
      const t = Date.now();
      if (error) process.stdout.write(JSON.stringify({ ok: false, code: error.code, details: error.details, t }) + "\n");
      else {
        const body = JSON.parse(reply?.toString() ?? "{}") as { server?: string; peer?: string };
        process.stdout.write(JSON.stringify({ ok: true, server: body.server, peer: body.peer, t }) + "\n");
      }
    },
  );
}

const timer = setInterval(() => {
  if (running) once();
}, INTERVAL_MS);

function stop(): void {
  running = false;
  clearInterval(timer);
  const wait = setInterval(() => {
    if (inFlight > 0) return;
    clearInterval(wait);
    client.close();
    process.exit(0);
  }, 5);
}
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
