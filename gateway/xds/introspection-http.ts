import http from "node:http";
import type { AddressInfo } from "node:net";
import type { NodeConfigDump, ServerStatus } from "./xds-core.ts";

/** What the introspection endpoint reads; the xDS server provides it. */
export interface IntrospectionSource {
  status(): ServerStatus;
  configDump(nodeId: string): NodeConfigDump | undefined;
}

/**
 * A tiny read-only HTTP endpoint, Envoy-admin style:
 * - `GET /status`: every connected node, per type: subscribed names, sent and
 *   ACKed versions, NACK count and the last NACK (what `fedgate xds status` will show);
 * - `GET /config_dump?node=<id>`: what that node runs, decoded to JSON.
 * Bind it to loopback: it shows configuration (not keys: secrets are listed by name only).
 */
export async function startIntrospection(source: IntrospectionSource, options: { host: string; port: number }): Promise<{ host: string; port: number; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://introspection");
    const reply = (code: number, body: unknown) => {
      res.writeHead(code, { "content-type": "application/json" });
      res.end(JSON.stringify(body, undefined, 2));
    };
    if (req.method !== "GET") return reply(405, { error: "GET only" });
    if (url.pathname === "/status") return reply(200, source.status());
    if (url.pathname === "/config_dump") {
      const node = url.searchParams.get("node");
      if (!node) return reply(400, { error: "missing ?node=<id>" });
      const dump = source.configDump(node);
      return dump ? reply(200, redactSecrets(dump)) : reply(404, { error: `node ${node} is not connected` });
    }
    return reply(404, { error: "try /status or /config_dump?node=<id>" });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return {
    host: address.address,
    port: address.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Private keys never leave the process through introspection. */
export function redactSecrets(dump: NodeConfigDump): NodeConfigDump {
  const secrets = dump.configs.secret;
  if (!secrets) return dump;
  return {
    ...dump,
    configs: {
      ...dump.configs,
      secret: {
        ...secrets,
        resources: secrets.resources.map((r) => {
          const tls = r.resource.tls_certificate as Record<string, unknown> | undefined;
          return tls ? { name: r.name, resource: { ...r.resource, tls_certificate: { ...tls, private_key: { inline_string: "[redacted]" } } } } : r;
        }),
      },
    },
  };
}
