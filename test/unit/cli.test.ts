import { suite } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync, spawnSync } from "node:child_process";

const cli = suite("fedgate command");
const bin = new URL("../../bin/fedgate.js", import.meta.url).pathname;

cli("prints the package version", () => {
  assert.match(execFileSync(bin, ["version"], { encoding: "utf8" }), /^fedgate \d+\.\d+\.\d+\n$/);
});

cli("rejects an unknown command with exit code 2 and the usage", () => {
  const result = spawnSync(bin, ["frobnicate"], { encoding: "utf8" });
  assert.is(result.status, 2);
  assert.match(result.stderr, /unknown command "frobnicate"/);
});

cli.run();
