import { createServer, type Server } from "node:http";
import { boundPort, listen } from "./import-listener.ts";

export interface AdminSource {
  /** Empty when ready; else why not, one reason a line. */
  notReadyReasons(): readonly string[];
  metricsText(): string;
  listenerAddresses(): Record<string, { host: string; port: number }>;
  configSummary(): unknown;
}

/**
 * The admin endpoint: `GET /ready` (200, or 503 with a line per reason), `GET /metrics` (Prometheus
 * text), `GET /listeners` (bound addresses, for port overrides of 0) and
 * `GET /config` (the parsed running config, no private keys).
 */
export async function startAdmin(options: { host: string; port: number; source: AdminSource }): Promise<{ server: Server; port: number }> {
  const { source } = options;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, "text/plain", "GET only\n");
    switch (path) {
      case "/ready": {
        const reasons = source.notReadyReasons();
        return reasons.length === 0 ? send(200, "text/plain", "ready\n") : send(503, "text/plain", ["not ready", ...reasons].join("\n") + "\n");
      }
      case "/metrics":
        return send(200, "text/plain; version=0.0.4", source.metricsText());
      case "/listeners":
        return send(200, "application/json", JSON.stringify(source.listenerAddresses()));
      case "/config":
        return send(200, "application/json", JSON.stringify(source.configSummary()));
      default:
        return send(404, "text/plain", "not found\n");
    }
  });
  await listen(server, options.host, options.port, "admin");
  return { server, port: boundPort(server) };
}
