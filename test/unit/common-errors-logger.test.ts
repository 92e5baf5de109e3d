import { suite } from "uvu";
import * as assert from "uvu/assert";
import { FedgateError, ValidationError, asError, createLogger } from "../../common/index.ts";

const errors = suite("FedgateError and ValidationError");

errors("carry a stable code, the retry decision and the cause", () => {
  const cause = new Error("socket closed");
  const err = new FedgateError("FEDGATE_BUS_UNAVAILABLE", "bus unavailable", { cause, retryable: true });
  assert.is(err.code, "FEDGATE_BUS_UNAVAILABLE");
  assert.ok(err.retryable);
  assert.is(err.cause, cause);
  assert.is(err.name, "FedgateError");
});

errors("a validation error lists every problem in its message", () => {
  const err = new ValidationError("FEDGATE_BAD_RECORD", "export record", [
    { path: "ports[0].port", message: "must be 1..65535" },
    { path: "cluster", message: "required" },
  ]);
  assert.is(err.problems.length, 2);
  assert.is(err.message, "export record: ports[0].port: must be 1..65535; cluster: required");
  assert.is(err.name, "ValidationError");
  assert.ok(err instanceof FedgateError);
});

errors("asError wraps thrown non-errors", () => {
  assert.is(asError("boom").message, "boom");
  const e = new TypeError("x");
  assert.is(asError(e), e);
});

const logger = suite("createLogger");

logger("writes JSON lines with child fields and drops levels below the minimum", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "info", write: (l) => lines.push(l) }).child({ component: "exchange", cluster: "a" });
  log.debug("hidden");
  log.warn("record rejected", { key: "exports.a.default.web", err: new FedgateError("FEDGATE_X", "bad") });
  assert.is(lines.length, 1);
  const record = JSON.parse(lines[0] as string) as Record<string, unknown>;
  assert.is(record["level"], "warn");
  assert.is(record["msg"], "record rejected");
  assert.is(record["component"], "exchange");
  assert.is(record["cluster"], "a");
  assert.equal(record["err"], { name: "FedgateError", message: "bad", code: "FEDGATE_X" });
});

logger("pretty format is one readable line", () => {
  const lines: string[] = [];
  createLogger({ format: "pretty", write: (l) => lines.push(l) }).info("joined", { cluster: "b" });
  assert.match(lines[0] as string, /INFO {2}joined cluster=b$/);
});

errors.run();
logger.run();
