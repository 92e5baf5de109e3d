import type { Problem } from "../../common/index.ts";

const DNS_LABEL_MAX = 63;
const DNS_LABEL_CHARS = /^[a-z0-9-]*$/;

/**
 * Every reason `name` is not an RFC 1123 DNS label; empty when it is one.
 * Cluster, namespace and service names on the bus are labels, so none holds
 * the `.` that separates NATS subject tokens.
 */
export function dnsLabelProblems(name: string, path = ""): Problem[] {
  if (name.length === 0) return [{ path, message: "must not be empty" }];
  const problems: Problem[] = [];
  if (name.length > DNS_LABEL_MAX) problems.push({ path, message: `must be at most ${DNS_LABEL_MAX} characters, got ${name.length}` });
  if (!DNS_LABEL_CHARS.test(name)) problems.push({ path, message: "may contain only lowercase letters, digits and '-'" });
  if (name.startsWith("-") || name.endsWith("-")) problems.push({ path, message: "must start and end with a letter or digit" });
  return problems;
}
