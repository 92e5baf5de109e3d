/** Fixture for the teardown test: starts a NATS node, prints its pid, then waits to be killed. */
import { startNats } from "../env/index.ts";

const nats = await startNats({ nodes: 1 });
process.stdout.write(`${JSON.stringify({ pid: nats.nodes[0]?.pid })}\n`);
setInterval(() => {}, 60_000);
