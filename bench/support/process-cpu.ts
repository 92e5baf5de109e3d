import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const CLOCK_TICKS_PER_S = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());

/**
 * CPU seconds (user + system) the given Linux processes have used so far,
 * from /proc/<pid>/stat. The difference over a run is what the processes
 * cost, whatever share of a loaded machine the scheduler gave them.
 */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    // Fields after "(comm) ": state is field 3, utime 14 and stime 15.
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / CLOCK_TICKS_PER_S;
}

/**
 * Resident memory of the given Linux processes, summed, in MB (MiB): now
 * (VmRSS) and the peak of each process's life so far (VmHWM), from /proc/<pid>/status.
 */
export function residentMb(pids: readonly number[]): { now: number; peak: number } {
  let nowKb = 0;
  let peakKb = 0;
  for (const pid of pids) {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    nowKb += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    peakKb += Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  }
  return { now: nowKb / 1024, peak: peakKb / 1024 };
}
