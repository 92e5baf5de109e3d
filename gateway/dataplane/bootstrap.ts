import { readFile } from "node:fs/promises";
import { z } from "zod";
import { asError } from "../../common/index.ts";
import { GatewayBootstrapError } from "./errors.ts";
import { MUX_KEEPALIVE_INTERVAL_MS, MUX_KEEPALIVE_TIMEOUT_MS } from "./tunnel-pool.ts";

/**
 * The gateway's bootstrap, shaped like Envoy's: who this node is, where its
 * ADS server is, and where the admin endpoint listens. `fedgate` adds local
 * listener placement (bind address, port overrides) so that several gateways
 * can share one host in tests and demos.
 *
 * ```json
 * { "node": { "id": "gw-a", "cluster": "a", "metadata": { "FEDGATE_DATAPLANE": "gateway" } },
 *   "xds_servers": [{ "server_uri": "127.0.0.1:18000" }],
 *   "admin": { "address": "127.0.0.1", "port": 15000 },
 *   "fedgate": { "bind_address": "127.0.0.1", "port_overrides": { "15443": 0 } } }
 * ```
 */

const port = z.number().int().min(0).max(65_535);

export const bootstrapSchema = z.object({
  node: z.object({
    id: z.string().min(1).max(253),
    cluster: z.string().min(1).max(253),
    metadata: z.record(z.string(), z.string()).default({}),
  }),
  xds_servers: z.array(z.object({ server_uri: z.string().regex(/^[^\s]+:\d+$/, "must be host:port") })).min(1),
  admin: z.object({ address: z.string().min(1).default("127.0.0.1"), port: port.default(15000) }).prefault({}),
  fedgate: z
    .object({
      /** Overrides every listener's address (translate.ts emits 0.0.0.0). */
      bind_address: z.string().min(1).optional(),
      /** xDS listener port -> local port (0: any free port; the admin `/listeners` shows the bound one). */
      port_overrides: z.record(z.string().regex(/^\d+$/), port).default({}),
      /** A TLS client that has not finished its handshake by then is cut off. */
      handshake_timeout_ms: z.number().int().min(1).max(120_000).default(5_000),
      /** How long SIGTERM waits for open connections before closing them. */
      drain_timeout_ms: z.number().int().min(0).max(600_000).default(30_000),
      /** ADS protocol: incremental (DeltaAggregatedResources, only changed resources per push) or state of the world. */
      xds_protocol: z.enum(["delta", "sotw"]).default("delta"),
      /** ADS reconnect backoff. */
      reconnect_initial_ms: z.number().int().min(1).max(60_000).default(250),
      reconnect_max_ms: z.number().int().min(1).max(600_000).default(10_000),
      /** Offer fedgate-mux/1 (ALPN) when dialling peer gateways: many relayed connections per mTLS tunnel. false: one mTLS connection each. */
      mux_tunnels: z.boolean().default(true),
      /** fedgate-mux/2 keep-alive: a tunnel silent this long sends a PING (gateway/README.md, "Tunnels"). */
      mux_keepalive_interval_ms: z.number().int().min(10).max(600_000).default(MUX_KEEPALIVE_INTERVAL_MS),
      /** ... and is closed as dead when the peer sends nothing this long after it. */
      mux_keepalive_timeout_ms: z.number().int().min(10).max(600_000).default(MUX_KEEPALIVE_TIMEOUT_MS),
    })
    .prefault({}),
});

export type Bootstrap = Readonly<z.output<typeof bootstrapSchema>>;
export type BootstrapInput = z.input<typeof bootstrapSchema>;

export function parseBootstrap(input: unknown): Bootstrap {
  const result = bootstrapSchema.safeParse(input);
  if (!result.success) throw new GatewayBootstrapError(result.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message })));
  return Object.freeze(result.data);
}

export async function loadBootstrap(file: string): Promise<Bootstrap> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new GatewayBootstrapError([{ path: file, message: asError(err).message }], { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GatewayBootstrapError([{ path: file, message: `not JSON: ${asError(err).message}` }], { cause: err });
  }
  return parseBootstrap(json);
}
