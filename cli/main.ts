import pkg from "../package.json" with { type: "json" };

const USAGE = `fedgate: multi-cluster federation gateway for Kubernetes

Usage:
  fedgate controller --config <file>  run one cluster's federation controller and its gateway's xDS server
  fedgate gateway --bootstrap <file>   run the gateway data plane (xDS client; see gateway/README.md)
  fedgate drill [--json <file>]        bring up a local three-cluster ClusterSet, run the failover drill, report, tear down
  fedgate version     print the version
  fedgate help        show this help

The join command is not built yet; see the README.`;

/** Runs the CLI and returns the process exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [command] = argv;
  switch (command) {
    case "version":
    case "--version": {
      process.stdout.write(`fedgate ${pkg.version}\n`);
      return 0;
    }
    case "controller": {
      const file = flagValue(argv, "--config");
      if (!file) {
        process.stderr.write(`fedgate controller: --config <file> is required\n`);
        return 2;
      }
      const { runController } = await import("../federation/index.ts");
      return runController({ configFile: file });
    }
    case "gateway": {
      const file = flagValue(argv, "--bootstrap");
      if (!file) {
        process.stderr.write(`fedgate gateway: --bootstrap <file> is required\n`);
        return 2;
      }
      const { runGateway } = await import("../gateway/index.ts");
      return runGateway({ bootstrapFile: file });
    }
    case "drill": {
      const { runDrill } = await import("../drill/index.ts");
      const jsonFile = flagValue(argv, "--json");
      return runDrill(jsonFile ? { jsonFile } : {});
    }
    case undefined:
    case "help":
    case "--help":
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`fedgate: unknown command "${command}"\n\n${USAGE}\n`);
      return 2;
  }
}

function flagValue(argv: readonly string[], flag: string): string | undefined {
  const at = argv.indexOf(flag);
  return at >= 0 ? argv[at + 1] : undefined;
}
