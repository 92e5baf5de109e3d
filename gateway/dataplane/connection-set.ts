import type { Socket } from "node:net";
import type { MetricSeries } from "./metrics.ts";

/** Every open downstream connection, so the gateway can drain them and count them per listener. */
export class ConnectionSet {
  private readonly sockets = new Set<Socket>();
  private readonly waiters = new Set<() => void>();

  add(socket: Socket, series: { total: MetricSeries; active: MetricSeries }): void {
    this.sockets.add(socket);
    series.total.add();
    series.active.add(1);
    socket.once("close", () => {
      this.sockets.delete(socket);
      series.active.add(-1);
      if (this.sockets.size === 0) for (const w of [...this.waiters]) w();
    });
  }

  get size(): number {
    return this.sockets.size;
  }

  /** Resolves when every connection has closed, or after `timeoutMs` (then the rest are destroyed). */
  async drain(timeoutMs: number): Promise<number> {
    if (this.sockets.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.waiters.add(done);
      });
    }
    const left = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    return left;
  }
}
