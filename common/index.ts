export { FedgateError, ValidationError, asError, type Problem } from "./errors.ts";
export { Backoff, sleep, type BackoffOptions } from "./backoff.ts";
export { createLogger, silentLogger, type Logger, type LogFields, type LogLevel, type LoggerOptions } from "./logger.ts";
export { keyedChangeStream, type KeyedChangeStreamOptions } from "./keyed-change-stream.ts";
export { WorkQueue, type WorkQueueOptions, type ReconcileResult } from "./work-queue.ts";
