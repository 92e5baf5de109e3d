import { mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Binaries are cached per machine, outside the checkout, so every clone (CI
 * clones afresh) reuses what an earlier run built. FEDGATE_CACHE_DIR overrides.
 */
export function cacheDir(): string {
  return process.env["FEDGATE_CACHE_DIR"] ?? join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "fedgate");
}

/** A fresh scratch directory for one server's data, certificates and logs. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `fedgate-${prefix}-`));
}

/**
 * Removes a scratch directory once its servers stopped cleanly. A failed
 * start keeps its directory (the error already carries the log's tail); a
 * kube-apiserver's etcd alone leaves ~200 MB, which filled this machine's
 * disk after some thousand runs.
 */
export function removeScratchDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
