import type { RouteConfigSpec, RouteSpec, VirtualHostSpec } from "./resources.ts";

/**
 * Picks the virtual host for a Host / :authority the way Envoy does: an exact
 * domain first, then the longest `*.suffix`, then the longest `prefix*`, then
 * `*`. Each form is tried on the value as sent (`host:port`), then without
 * its port, before a less specific form.
 */
export function matchVirtualHost(config: RouteConfigSpec, authority: string): VirtualHostSpec | undefined {
  const host = authority.toLowerCase();
  const bare = host.replace(/:\d+$/, "");
  let best: { vhost: VirtualHostSpec; rank: number; length: number } | undefined;
  for (const candidate of bare === host ? [host] : [host, bare]) {
    const found = bestMatch(config.virtualHosts, candidate);
    if (found && (!best || found.rank > best.rank || (found.rank === best.rank && found.length > best.length))) best = found;
  }
  return best?.vhost;
}

/** The first route of the virtual host whose prefix the path starts with. */
export function matchRoute(vhost: VirtualHostSpec, path: string): RouteSpec | undefined {
  return vhost.routes.find((r) => path.startsWith(r.prefix));
}

function bestMatch(vhosts: readonly VirtualHostSpec[], host: string): { vhost: VirtualHostSpec; rank: number; length: number } | undefined {
  let best: { vhost: VirtualHostSpec; rank: number; length: number } | undefined;
  for (const vhost of vhosts) {
    for (const d of vhost.domains) {
      const rank = d === host ? 4 : d === "*" ? 1 : d.startsWith("*") && host.endsWith(d.slice(1)) && host.length > d.length - 1 ? 3 : d.endsWith("*") && host.startsWith(d.slice(0, -1)) && host.length > d.length - 1 ? 2 : 0;
      if (rank === 0) continue;
      if (!best || rank > best.rank || (rank === best.rank && d.length > best.length)) best = { vhost, rank, length: d.length };
    }
  }
  return best;
}
