import { Agent } from "node:https";
import * as k8s from "@kubernetes/client-node";

/** Connections kept open per apiserver: enough for the controller's workers and its Lease renewals. */
const MAX_SOCKETS_PER_APISERVER = 16;

/**
 * client-node 1.4 builds a new https.Agent for every API call, so each call
 * opens a new TLS connection (and re-parses the CA): bench/controller-import.ts
 * found 38 % of the controller's CPU there and ~21 ms of a 28 ms call. This
 * KubeConfig hands every call one keep-alive agent per set of TLS options, so
 * calls reuse connections; rotated client credentials get a new agent.
 */
class KeepAliveKubeConfig extends k8s.KubeConfig {
  private readonly agents = new Map<string, Agent>();

  override async applySecurityAuthentication(context: k8s.RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const fresh = context.getAgent();
    if (!(fresh instanceof Agent)) return; // a proxy agent: leave it as client-node made it
    const { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername } = fresh.options;
    const options = { ca, cert, key, pfx, passphrase, rejectUnauthorized, servername };
    const id = JSON.stringify(options, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString("base64") : v));
    let agent = this.agents.get(id);
    if (!agent) {
      agent = new Agent({ ...options, keepAlive: true, maxSockets: MAX_SOCKETS_PER_APISERVER });
      this.agents.set(id, agent);
    }
    context.setAgent(agent);
  }
}

/** A copy of `kubeConfig` whose API calls reuse kept-alive connections (watches are unaffected). */
export function withKeepAlive(kubeConfig: k8s.KubeConfig): k8s.KubeConfig {
  const copy = new KeepAliveKubeConfig();
  copy.loadFromOptions({ clusters: kubeConfig.clusters, users: kubeConfig.users, contexts: kubeConfig.contexts, currentContext: kubeConfig.currentContext });
  return copy;
}
