import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import protobuf from "protobufjs";
import type { Problem } from "../../common/index.ts";
import { XdsProtoLoadError } from "./errors.ts";
import { messageNameOf, TYPE_PREFIX } from "./type-urls.ts";

/**
 * The Envoy v3 protos, loaded with protobufjs from the copies that ship inside
 * `@grpc/grpc-js-xds` (deps/envoy-api, xds, googleapis, protoc-gen-validate).
 *
 * `encode` is the gate every emitted resource passes: it walks the message
 * against its descriptor (unknown fields, wrong shapes, two members of a oneof,
 * unknown enum names) and the protoc-gen-validate rules that matter (required
 * messages and oneofs, string lengths and prefixes, numeric and duration
 * ranges, repeated counts, defined enums), collects every problem, and only
 * then encodes. Any fields are written as `{ "@type": url, ...fields }` and
 * validated recursively.
 */

const PROTO_FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/extensions/transport_sockets/tls/v3/tls.proto",
  "envoy/extensions/transport_sockets/tls/v3/secret.proto",
  "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
  "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
];

/** A message in the shape `encode` accepts: proto field names (snake_case), Any as `{ "@type": ... }`. */
export type ProtoMessage = { readonly [field: string]: unknown };

type Rules = Record<string, Record<string, unknown> | undefined>;

const WRAPPER_SCALAR: Record<string, string> = {
  ".google.protobuf.UInt32Value": "uint32",
  ".google.protobuf.UInt64Value": "uint64",
  ".google.protobuf.Int32Value": "int32",
  ".google.protobuf.Int64Value": "int64",
  ".google.protobuf.DoubleValue": "double",
  ".google.protobuf.FloatValue": "float",
  ".google.protobuf.BoolValue": "bool",
  ".google.protobuf.StringValue": "string",
};

const INT_RANGES: Record<string, [number, number]> = {
  int32: [-2_147_483_648, 2_147_483_647],
  sint32: [-2_147_483_648, 2_147_483_647],
  sfixed32: [-2_147_483_648, 2_147_483_647],
  uint32: [0, 4_294_967_295],
  fixed32: [0, 4_294_967_295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sint64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  sfixed64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
  fixed64: [0, Number.MAX_SAFE_INTEGER],
};

export interface EncodeResult {
  /** Present only when there were no problems. */
  bytes: Uint8Array | undefined;
  problems: Problem[];
}

export class ProtoRegistry {
  readonly root: protobuf.Root;
  // protobufjs recomputes fullName and walks the namespace on every lookup: memoised for the encoder's hot path.
  private readonly types = new Map<string, protobuf.Type>();
  private readonly fullNames = new WeakMap<protobuf.ReflectionObject, string>();

  private constructor(root: protobuf.Root) {
    this.root = root;
  }

  /** Loads the protos (about 150 ms); share one registry per process where you can. */
  static load(): ProtoRegistry {
    const require = createRequire(import.meta.url);
    const depsDir = path.join(path.dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
    const includeDirs = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => path.join(depsDir, d));
    // google/protobuf/*.proto (descriptor, any, duration, ...) ship with protobufjs itself.
    includeDirs.push(path.dirname(require.resolve("protobufjs/package.json")));
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      for (const dir of includeDirs) {
        const candidate = path.join(dir, target);
        if (existsSync(candidate)) return candidate;
      }
      return target;
    };
    try {
      root.loadSync(PROTO_FILES, { keepCase: true });
      root.resolveAll();
    } catch (error) {
      throw new XdsProtoLoadError(`cannot load the Envoy protos from ${depsDir}`, { cause: error });
    }
    return new ProtoRegistry(root);
  }

  type(fullName: string): protobuf.Type {
    const name = fullName.startsWith(".") ? fullName.slice(1) : fullName;
    let type = this.types.get(name);
    if (!type) {
      type = this.root.lookupType(name);
      this.types.set(name, type);
    }
    return type;
  }

  private fullNameOf(object: protobuf.ReflectionObject): string {
    let name = this.fullNames.get(object);
    if (name === undefined) {
      name = object.fullName;
      this.fullNames.set(object, name);
    }
    return name;
  }

  /** Validates `message` as `typeName` (every problem, with paths) and encodes it when clean. */
  encode(typeName: string, message: ProtoMessage, at = ""): EncodeResult {
    const problems: Problem[] = [];
    let type: protobuf.Type;
    try {
      type = this.type(typeName);
    } catch (error) {
      return { bytes: undefined, problems: [{ path: at, message: `unknown message type ${typeName}: ${String(error)}` }] };
    }
    const prepared = this.prepareMessage(type, message, at, problems);
    if (problems.length || !prepared) return { bytes: undefined, problems };
    return { bytes: type.encode(type.fromObject(prepared)).finish(), problems };
  }

  /**
   * Validates one item of a repeated message field and encodes it as that
   * field's wire entry (tag, length, bytes). Entries appended to the encoding
   * of the rest of the message decode as the whole message would (protobuf
   * merges fields in any order), so a resource that lists every service is
   * validated item by item and only new items cost anything.
   */
  encodeRepeatedItem(typeName: string, fieldName: string, item: unknown, at: string): EncodeResult {
    const field = this.type(typeName).fields[fieldName];
    const itemType = field?.resolvedType;
    if (!field?.repeated || !(itemType instanceof protobuf.Type)) return { bytes: undefined, problems: [{ path: at, message: `${typeName}.${fieldName} is not a repeated message field` }] };
    const problems: Problem[] = [];
    const repeated = rulesOf(field)?.repeated;
    const itemRules = isPlainObject(repeated?.items) ? (repeated.items as Rules) : undefined;
    const prepared = this.prepareValue(field, item, itemRules, at, problems);
    if (problems.length || !isPlainObject(prepared)) return { bytes: undefined, problems };
    const bytes = itemType.encode(itemType.fromObject(prepared)).finish();
    // Wire type 2 (length-delimited): tag, then the item with its length.
    return { bytes: protobuf.Writer.create().uint32((field.id << 3) | 2).bytes(bytes).finish(), problems };
  }

  /** Decodes to the JSON form (Any as `@type`, enums as names, 64-bit as strings). */
  decode(typeName: string, bytes: Uint8Array): Record<string, unknown> {
    const type = this.type(typeName);
    return type.toObject(type.decode(bytes), { json: true, longs: String, enums: String, bytes: String });
  }

  /** Decodes an Any's payload by its type URL. */
  decodeAny(typeUrl: string, bytes: Uint8Array): Record<string, unknown> {
    return { "@type": typeUrl, ...this.decode(messageNameOf(typeUrl), bytes) };
  }

  private prepareMessage(type: protobuf.Type, value: unknown, at: string, problems: Problem[]): Record<string, unknown> | undefined {
    if (!isPlainObject(value)) {
      problems.push({ path: at, message: `expected a ${type.name} message, got ${describe(value)}` });
      return undefined;
    }
    if (this.fullNameOf(type) === ".google.protobuf.Any") return this.prepareAny(value, at, problems);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      if (!type.fields[key]) problems.push({ path: join(at, key), message: `unknown field of ${type.name}` });
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => value[f.name] !== undefined);
      if (set.length > 1) problems.push({ path: at, message: `oneof ${oneof.name} has ${set.length} members set (${set.map((f) => f.name).join(", ")})` });
      const required = (oneof.options)?.["(validate.required)"] === true;
      if (required && set.length === 0) problems.push({ path: join(at, oneof.name), message: `one of ${oneof.fieldsArray.map((f) => f.name).join(", ")} is required` });
    }
    for (const field of type.fieldsArray) {
      const path = join(at, field.name);
      const rules = rulesOf(field);
      const v = value[field.name];
      if (v === undefined || v === null) {
        if (!field.partOf) this.checkUnset(field, rules, path, problems);
        continue;
      }
      if (field.map) {
        if (!isPlainObject(v)) {
          problems.push({ path, message: `expected a map, got ${describe(v)}` });
          continue;
        }
        const entries: Record<string, unknown> = {};
        for (const [k, item] of Object.entries(v)) entries[k] = this.prepareValue(field, item, undefined, `${path}[${k}]`, problems);
        out[field.name] = entries;
      } else if (field.repeated) {
        if (!Array.isArray(v)) {
          problems.push({ path, message: `expected a list, got ${describe(v)}` });
          continue;
        }
        const repeated = rules?.repeated;
        checkCount(v.length, repeated, path, problems);
        const itemRules = isPlainObject(repeated?.items) ? (repeated.items as Rules) : undefined;
        out[field.name] = v.map((item, i) => this.prepareValue(field, item, itemRules, `${path}[${i}]`, problems));
      } else {
        out[field.name] = this.prepareValue(field, v, rules, path, problems);
      }
    }
    return out;
  }

  private checkUnset(field: protobuf.Field, rules: Rules | undefined, path: string, problems: Problem[]): void {
    if (!rules) return;
    if (rules.message?.required === true || rules.duration?.required === true || rules.any?.required === true || rules.timestamp?.required === true) {
      problems.push({ path, message: "is required" });
      return;
    }
    if (field.repeated || field.map) {
      checkCount(0, rules.repeated ?? rules.map, path, problems);
      return;
    }
    if (field.resolvedType) return;
    // An unset proto3 scalar is its default, and PGV checks the default too.
    const scalarDefault = field.type === "string" ? "" : field.type === "bool" ? false : field.type === "bytes" ? "" : 0;
    checkScalar(field.type, scalarDefault, rules[field.type], path, problems);
  }

  private prepareValue(field: protobuf.Field, v: unknown, rules: Rules | undefined, path: string, problems: Problem[]): unknown {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) {
      const fullName = this.fullNameOf(resolved);
      const wrapped = WRAPPER_SCALAR[fullName];
      if (wrapped && isPlainObject(v) && rules?.[wrapped]) checkScalar(wrapped, v.value, rules[wrapped], join(path, "value"), problems);
      if (fullName === ".google.protobuf.Duration" && rules?.duration) checkDuration(v, rules.duration, path, problems);
      if (rules?.message?.skip === true) return v;
      return this.prepareMessage(resolved, v, path, problems);
    }
    if (resolved instanceof protobuf.Enum) {
      const known = typeof v === "string" ? v in resolved.values : typeof v === "number" && Object.values(resolved.values).includes(v);
      if (!known) problems.push({ path, message: `${describe(v)} is not a value of enum ${resolved.name}` });
      return v;
    }
    checkScalar(field.type, v, rules?.[field.type], path, problems);
    return v;
  }

  private prepareAny(value: Record<string, unknown>, at: string, problems: Problem[]): Record<string, unknown> | undefined {
    const typeUrl = value["@type"];
    if (typeof typeUrl !== "string" || !typeUrl.startsWith(TYPE_PREFIX)) {
      problems.push({ path: join(at, "@type"), message: `an Any needs "@type": "${TYPE_PREFIX}<message>"` });
      return undefined;
    }
    let inner: protobuf.Type;
    try {
      inner = this.type(messageNameOf(typeUrl));
    } catch (error) {
      problems.push({ path: join(at, "@type"), message: `unknown type ${typeUrl}: ${String(error)}` });
      return undefined;
    }
    const body = Object.fromEntries(Object.entries(value).filter(([k]) => k !== "@type"));
    const before = problems.length;
    const prepared = this.prepareMessage(inner, body, `${at}<${inner.name}>`, problems);
    if (!prepared || problems.length > before) return undefined;
    return { type_url: typeUrl, value: inner.encode(inner.fromObject(prepared)).finish() };
  }
}

function rulesOf(field: protobuf.Field): Rules | undefined {
  // Typed as a record, but protobufjs stores one entry per declared option in an array.
  const parsed: unknown = field.parsedOptions;
  const entries: unknown[] = Array.isArray(parsed) ? parsed : parsed ? [parsed] : [];
  for (const option of entries) {
    const rules = isPlainObject(option) ? option["(validate.rules)"] : undefined;
    if (isPlainObject(rules)) return rules as Rules;
  }
  return undefined;
}

function checkCount(count: number, rules: Record<string, unknown> | undefined, path: string, problems: Problem[]): void {
  if (!rules) return;
  const min = Number(rules.min_items ?? rules.min_pairs ?? 0);
  const max = rules.max_items ?? rules.max_pairs;
  if (count < min) problems.push({ path, message: count === 0 ? `must have at least ${min} item(s)` : `has ${count} item(s), needs at least ${min}` });
  if (max !== undefined && count > Number(max)) problems.push({ path, message: `has ${count} item(s), at most ${Number(max)} allowed` });
}

function checkScalar(type: string, v: unknown, rules: Record<string, unknown> | undefined, path: string, problems: Problem[]): void {
  switch (type) {
    case "string": {
      if (typeof v !== "string") {
        problems.push({ path, message: `expected a string, got ${describe(v)}` });
        return;
      }
      if (!rules) return;
      const chars = [...v].length;
      const bytes = Buffer.byteLength(v);
      if (rules.min_len !== undefined && chars < Number(rules.min_len)) problems.push({ path, message: v === "" ? "must not be empty" : `is shorter than ${Number(rules.min_len)} characters` });
      if (rules.max_len !== undefined && chars > Number(rules.max_len)) problems.push({ path, message: `is longer than ${Number(rules.max_len)} characters` });
      if (rules.min_bytes !== undefined && bytes < Number(rules.min_bytes)) problems.push({ path, message: v === "" ? "must not be empty" : `is shorter than ${Number(rules.min_bytes)} bytes` });
      if (rules.max_bytes !== undefined && bytes > Number(rules.max_bytes)) problems.push({ path, message: `is longer than ${Number(rules.max_bytes)} bytes` });
      if (typeof rules.prefix === "string" && !v.startsWith(rules.prefix)) problems.push({ path, message: `must start with ${rules.prefix}` });
      if (typeof rules.suffix === "string" && !v.endsWith(rules.suffix)) problems.push({ path, message: `must end with ${rules.suffix}` });
      if (typeof rules.contains === "string" && !v.includes(rules.contains)) problems.push({ path, message: `must contain ${rules.contains}` });
      if (Array.isArray(rules.in) && !rules.in.includes(v)) problems.push({ path, message: `must be one of ${rules.in.join(", ")}` });
      if (rules.well_known_regex !== undefined && rules.strict !== false && /[\0\r\n]/.test(v)) problems.push({ path, message: "must not contain NUL, CR or LF" });
      return;
    }
    case "bool":
      if (typeof v !== "boolean") problems.push({ path, message: `expected a boolean, got ${describe(v)}` });
      return;
    case "bytes":
      if (!(v instanceof Uint8Array) && typeof v !== "string") problems.push({ path, message: `expected bytes, got ${describe(v)}` });
      return;
    case "double":
    case "float":
      if (typeof v !== "number" || Number.isNaN(v)) {
        problems.push({ path, message: `expected a number, got ${describe(v)}` });
        return;
      }
      checkRange(v, rules, path, problems);
      return;
    default: {
      const range = INT_RANGES[type];
      if (!range) return;
      const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
      if (typeof n !== "number" || !Number.isInteger(n)) {
        problems.push({ path, message: `expected an integer (${type}), got ${describe(v)}` });
        return;
      }
      if (n < range[0] || n > range[1]) problems.push({ path, message: `${n} is out of the ${type} range` });
      checkRange(n, rules, path, problems);
    }
  }
}

function checkRange(n: number, rules: Record<string, unknown> | undefined, path: string, problems: Problem[]): void {
  if (!rules) return;
  const bound = (key: string) => (rules[key] === undefined ? undefined : Number(rules[key]));
  const gt = bound("gt");
  const gte = bound("gte");
  const lt = bound("lt");
  const lte = bound("lte");
  const konst = bound("const");
  if (gt !== undefined && !(n > gt)) problems.push({ path, message: `${n} must be greater than ${gt}` });
  if (gte !== undefined && !(n >= gte)) problems.push({ path, message: `${n} must be at least ${gte}` });
  if (lt !== undefined && !(n < lt)) problems.push({ path, message: `${n} must be less than ${lt}` });
  if (lte !== undefined && !(n <= lte)) problems.push({ path, message: `${n} must be at most ${lte}` });
  if (konst !== undefined && n !== konst) problems.push({ path, message: `${n} must equal ${konst}` });
  if (Array.isArray(rules.in) && !rules.in.map(Number).includes(n)) problems.push({ path, message: `${n} must be one of ${rules.in.join(", ")}` });
}

function durationNanos(v: unknown): number | undefined {
  if (!isPlainObject(v)) return undefined;
  return Number(v.seconds ?? 0) * 1e9 + Number(v.nanos ?? 0);
}

function checkDuration(v: unknown, rules: Record<string, unknown>, path: string, problems: Problem[]): void {
  const n = durationNanos(v);
  if (n === undefined || Number.isNaN(n)) return;
  const nanos = isPlainObject(v) ? Number(v.nanos ?? 0) : 0;
  if (nanos < -999_999_999 || nanos > 999_999_999) problems.push({ path: join(path, "nanos"), message: "is out of range" });
  const bound = (key: string) => durationNanos(rules[key]);
  const gt = bound("gt");
  const gte = bound("gte");
  const lt = bound("lt");
  const lte = bound("lte");
  if (gt !== undefined && !(n > gt)) problems.push({ path, message: `duration must be greater than ${gt / 1e6} ms` });
  if (gte !== undefined && !(n >= gte)) problems.push({ path, message: `duration must be at least ${gte / 1e6} ms` });
  if (lt !== undefined && !(n < lt)) problems.push({ path, message: `duration must be less than ${lt / 1e6} ms` });
  if (lte !== undefined && !(n <= lte)) problems.push({ path, message: `duration must be at most ${lte / 1e6} ms` });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "a list";
  if (v === null) return "null";
  return typeof v === "string" ? JSON.stringify(v) : typeof v;
}

function join(at: string, key: string): string {
  return at ? `${at}.${key}` : key;
}
