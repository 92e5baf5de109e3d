/**
 * The one base error of fedgate. Every error a caller may branch on carries a
 * stable `code`; callers decide retry-or-give-up by class or code, never by
 * message text.
 */
export class FedgateError extends Error {
  readonly code: string;
  /** Whether retrying the same operation later can succeed. */
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { cause?: unknown; retryable?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** One problem found while validating input; validators collect all of them. */
export interface Problem {
  /** Where the problem is, e.g. `spec.ports[1].port` or `certs[2]`. */
  path: string;
  message: string;
}

/** Input failed validation; `problems` lists every problem found, not just the first. */
export class ValidationError extends FedgateError {
  readonly problems: readonly Problem[];

  constructor(code: string, subject: string, problems: readonly Problem[], options: { cause?: unknown } = {}) {
    super(code, `${subject}: ${problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join("; ")}`, options);
    this.problems = problems;
  }
}

/** Narrows an unknown thrown value to an Error, wrapping non-errors. */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}
