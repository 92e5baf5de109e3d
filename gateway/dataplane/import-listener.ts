import { createServer, type Server, type Socket } from "node:net";
import { asError } from "../../common/index.ts";
import { ListenFailedError } from "./errors.ts";
import type { ListenerContext } from "./listener-context.ts";
import type { ImportListenerSpec } from "./resources.ts";
import { relay, relayStream } from "./relay.ts";
import { connectUpstream } from "./upstream-connect.ts";

/**
 * An import listener (L4): one per imported service port. Each accepted
 * connection is paused until an upstream endpoint accepted (trying the next
 * endpoint or priority on failure), then relayed.
 */
export class ImportListener {
  spec: ImportListenerSpec;
  private readonly server: Server;
  private readonly ctx: ListenerContext;

  private constructor(spec: ImportListenerSpec, server: Server, ctx: ListenerContext) {
    this.spec = spec;
    this.server = server;
    this.ctx = ctx;
  }

  static async start(options: { spec: ImportListenerSpec; host: string; port: number; ctx: ListenerContext }): Promise<ImportListener> {
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true });
    const listener = new ImportListener(options.spec, server, options.ctx);
    server.on("connection", (socket) => listener.onConnection(socket));
    await listen(server, options.host, options.port, options.spec.name);
    return listener;
  }

  get port(): number {
    return boundPort(this.server);
  }

  /** Stops accepting; open connections carry on. */
  close(): void {
    this.server.close();
  }

  private onConnection(down: Socket): void {
    const { ctx } = this;
    const name = this.spec.name;
    ctx.connections.add(down, { total: ctx.metrics.downstreamConnections.labels({ listener: name }), active: ctx.metrics.downstreamActive.labels({ listener: name }) });
    down.on("error", () => down.destroy());
    const cluster = ctx.cluster(this.spec.cluster);
    if (!cluster) {
      ctx.metrics.downstreamRefused.labels({ listener: name, reason: "unknown_cluster" }).add();
      down.destroy();
      return;
    }
    connectUpstream({ cluster, secrets: ctx.secrets, tunnels: ctx.tunnels, onTlsFailure: (reason) => ctx.metrics.tlsFailures.labels({ side: "upstream", reason }).add() }).then(
      ({ link }) => {
        if (down.destroyed) {
          if (link.kind === "stream") link.stream.reset("cancel");
          else link.socket.destroy();
          return;
        }
        if (link.kind === "stream") relayStream(link.stream, down, cluster, "downstream");
        else relay(down, link.socket, cluster);
        down.resume();
      },
      (err: unknown) => {
        ctx.metrics.downstreamRefused.labels({ listener: name, reason: "no_healthy_upstream" }).add();
        ctx.logger.warn("no upstream accepted the connection", { listener: name, err: asError(err) });
        down.destroy();
      },
    );
  }
}

/** The port a listening server is bound to (0 before it listens or after it closed). */
export function boundPort(server: Server): number {
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

export function listen(server: Server, host: string, port: number, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(new ListenFailedError(name, `${host}:${port}`, { cause: err }));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.removeListener("error", onError);
      resolve();
    });
  });
}
