/**
 * Which port of this cluster's gateway serves each imported service port. A
 * derived EndpointSlice points at `<gateway import address>:<that port>`, and
 * the gateway's import listener for the service listens there. Assignments
 * are recovered from existing slices after a restart, so they never move.
 */
export class ImportPortAllocator {
  private readonly byKey = new Map<string, number>();
  private readonly used = new Set<number>();
  private readonly first: number;
  private readonly last: number;

  constructor(options: { first: number; last: number }) {
    this.first = options.first;
    this.last = options.last;
  }

  /** Records an assignment found in the cluster (an existing derived EndpointSlice). */
  seed(key: string, port: number): void {
    if (this.byKey.has(key)) return;
    this.byKey.set(key, port);
    this.used.add(port);
  }

  portFor(key: string): number {
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    for (let p = this.first; p <= this.last; p++) {
      if (this.used.has(p)) continue;
      this.seed(key, p);
      return p;
    }
    throw new RangeError(`no free gateway import port in ${this.first}-${this.last}`);
  }

  release(prefix: string): void {
    for (const [key, port] of this.byKey) {
      if (!key.startsWith(prefix)) continue;
      this.byKey.delete(key);
      this.used.delete(port);
    }
  }
}

/** The name a derived Service and EndpointSlice give an import port; unnamed ports get `<protocol>-<port>`. */
export function importPortName(port: { name?: string; protocol: string; port: number }): string {
  return port.name ?? `${port.protocol.toLowerCase()}-${port.port}`;
}

export function importPortKey(namespace: string, name: string, port: { name?: string; protocol: string; port: number }): string {
  return `${namespace}/${name}/${importPortName(port)}`;
}
