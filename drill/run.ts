import { writeFileSync } from "node:fs";
import { createLogger, type Logger } from "../common/index.ts";
import { inPrivateNetwork, runInPrivateNetwork } from "../test/env/index.ts";
import { runFailoverDrill } from "./failover-drill.ts";
import { LocalClusterSet } from "./local-clusterset.ts";
import { formatDrillReport } from "./report.ts";

/**
 * `fedgate drill [--json <file>]` (and `npm start`): brings up the local
 * ClusterSet, runs the failover drill, prints the report, tears everything
 * down. Exit 0 when the drill ran (its figures are reported, not judged),
 * 1 when it could not run. Outside the private network namespace it needs
 * (test/env/private-network.ts), it runs itself again inside one.
 */
export async function runDrill(options: { jsonFile?: string; logger?: Logger; write?: (line: string) => void }): Promise<number> {
  if (!inPrivateNetwork()) return runInPrivateNetwork([process.execPath, ...process.execArgv, ...process.argv.slice(1)]);
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const logger = options.logger ?? createLogger({ level: "warn", format: "pretty" });
  const started = performance.now();
  write("starting the local ClusterSet: NATS, three kube-apiservers, a fedgate controller and gateway per cluster ...");
  const set = await LocalClusterSet.start({ clusters: 3, logger });
  try {
    write(`up in ${((performance.now() - started) / 1000).toFixed(1)} s (host ${set.host}; logs and configs in ${set.dir})`);
    const report = await runFailoverDrill(set, (line) => write(`  ${line}`));
    write("");
    write(formatDrillReport(report));
    if (options.jsonFile) {
      writeFileSync(options.jsonFile, `${JSON.stringify(report, null, 2)}\n`);
      write(`\nJSON report: ${options.jsonFile}`);
    }
    return 0;
  } finally {
    write("tearing down ...");
    await set.stop();
  }
}
