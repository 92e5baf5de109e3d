#!/usr/bin/env node
// fedgate ships as TypeScript run through tsx's loader; this shim registers it and hands over to the CLI.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
