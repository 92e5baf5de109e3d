import { main } from "./main.ts";

/** The process entry: `bin/fedgate.js` loads it through tsx; the compiled build runs `node dist/cli/entry.js` without a loader. */
process.exitCode = await main(process.argv.slice(2));
