/**
 * The V8 flags each fedgate process runs with in its Deployment
 * (manifests/deploy; a test holds the two in step). V8 refuses them in
 * NODE_OPTIONS, so they go on the command line; the drill and the benches
 * start their processes with the same flags, so they measure what is deployed.
 */

/** A live heap of ~45 MB made V8 run a full mark-compact on nearly every xDS push (BENCHMARKS.md, issue 6). */
export const CONTROLLER_V8_FLAGS: readonly string[] = ["--initial-old-space-size=128"];

/** Background GC threads cost the gateway pair 2.4x the CPU per GB relayed (BENCHMARKS.md, "Runtime floor and V8 flags"). */
export const GATEWAY_V8_FLAGS: readonly string[] = ["--single-threaded-gc"];
