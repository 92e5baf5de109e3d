import { Agent, request } from "node:https";
import type * as k8s from "@kubernetes/client-node";

/**
 * A bare apiserver client over one kept-alive TLS connection. client-node 1.4
 * builds a new https.Agent for every request (a fresh TCP + TLS handshake
 * each time); this one shows what a request costs without that.
 */
export class KeepAliveClient {
  private readonly agent: Agent;
  private readonly server: URL;
  private readonly token: string;

  constructor(kubeConfig: k8s.KubeConfig) {
    const cluster = kubeConfig.getCurrentCluster();
    const token = kubeConfig.getCurrentUser()?.token;
    if (!cluster?.caData || !token) throw new Error("KeepAliveClient needs a kubeconfig with caData and a bearer token");
    this.agent = new Agent({ keepAlive: true, maxSockets: 1, ca: Buffer.from(cluster.caData, "base64") });
    this.server = new URL(cluster.server);
    this.token = token;
  }

  /** POSTs `body` as JSON to `path` and resolves with the status code once the response has been read. */
  post(path: string, body: object): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request(
        new URL(path, this.server),
        { method: "POST", agent: this.agent, headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" } },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify(body));
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
