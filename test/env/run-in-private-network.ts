import { runInPrivateNetwork } from "./private-network.ts";

/** `node --import tsx test/env/run-in-private-network.ts <command...>`: test/run.sh runs the end-to-end files this way. */
process.exitCode = await runInPrivateNetwork(process.argv.slice(2));
