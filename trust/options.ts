import type { z } from "zod";
import type { Problem } from "../common/index.ts";
import { TrustOptionsError } from "./errors.ts";

/** Turns zod issues into fedgate problems (`path` joined with dots and brackets). */
export function zodProblems(issues: readonly z.core.$ZodIssue[], prefix = ""): Problem[] {
  return issues.map((issue) => ({
    path: issue.path.reduce<string>((acc, seg) => (typeof seg === "number" ? `${acc}[${seg}]` : acc ? `${acc}.${String(seg)}` : String(seg)), prefix),
    message: issue.message,
  }));
}

/** Parses constructor options with `schema`, reporting every problem at once as a TrustOptionsError. */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, subject: string): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new TrustOptionsError(subject, zodProblems(result.error.issues));
  return Object.freeze(result.data) as z.output<S>;
}
