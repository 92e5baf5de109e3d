#!/usr/bin/env node
// fedgate ships as TypeScript run through tsx's loader; this shim registers it and hands over to the CLI.
import { register } from "tsx/esm/api";

register();
await import("../cli/entry.ts");
