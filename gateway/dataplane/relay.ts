import type { Socket } from "node:net";
import type { UpstreamCluster } from "./upstream-cluster.ts";

/**
 * Joins a downstream and an upstream socket: bytes both ways with
 * backpressure (pipe), FIN passed on, an error on either side resets the
 * other. Counts active connections and bytes on the upstream cluster.
 */
export function relay(down: Socket, up: Socket, cluster: UpstreamCluster): void {
  const series = cluster.series;
  series.connections.add();
  series.active.add(1);
  down.pipe(up);
  up.pipe(down);
  let closed = 0;
  const onClose = (hadError: boolean, other: Socket) => {
    if (hadError) other.destroy();
    else other.end();
    closed += 1;
    if (closed === 2) {
      series.active.add(-1);
      series.bytesUp.add(down.bytesRead);
      series.bytesDown.add(down.bytesWritten);
    }
  };
  // Errors are reported through 'close' (hadError); a listener is needed so they are not thrown.
  down.on("error", () => up.destroy());
  up.on("error", () => down.destroy());
  down.once("close", (hadError) => onClose(hadError, up));
  up.once("close", (hadError) => onClose(hadError, down));
}
