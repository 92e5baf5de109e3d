import { createHash } from "node:crypto";
import type { Problem } from "../../common/index.ts";
import type { ProtoMessage, ProtoRegistry } from "./proto-registry.ts";
import type { ResourceSet } from "./translate.ts";
import { messageNameOf, RESOURCE_KINDS, TYPE_URL, type ResourceKind } from "./type-urls.ts";

/** A resource ready for the wire: its encoded bytes and a content hash that decides whether a node needs it again. */
export interface EncodedResource {
  kind: ResourceKind;
  name: string;
  bytes: Uint8Array;
  hash: string;
}

export type EncodedSet = Record<ResourceKind, Map<string, EncodedResource>>;

/**
 * Resources that list every service, validated and encoded item by item:
 * the export listener's filter chains, the import RouteConfiguration's
 * virtual hosts. An export changes one item, so the rest is not validated
 * again (bench/xds-push.ts: most of an export's server CPU was re-validating
 * these two).
 */
const PIECEWISE_FIELD: Partial<Record<ResourceKind, string>> = { listener: "filter_chains", route: "virtual_hosts" };

/**
 * Validated, encoded resources. A translated message seen before (the same
 * object: `Translator` hands back an unchanged service's resources as they
 * were) is found by identity, without looking at its content. Otherwise it is
 * keyed by its content (kind, name, JSON): translation is deterministic, so a
 * resource a snapshot did not change is validated and encoded once, not again
 * for every snapshot and flavour (bench/xds-push.ts: re-validation was most of
 * a push's server work). Content entries live for one generation after their
 * last use (`endGeneration`); identity entries as long as their message does.
 * Only resources that pass every check of their own (proto, PGV, the name
 * they declare, the ClusterLoadAssignment invariants) are cached.
 */
export class EncodedResourceCache {
  private readonly registry: ProtoRegistry;
  private readonly byIdentity = new WeakMap<ProtoMessage, EncodedResource>();
  private readonly itemsByIdentity = new WeakMap<object, Uint8Array>();
  private previous = new Map<string, EncodedResource>();
  private current = new Map<string, EncodedResource>();
  private previousItems = new Map<string, Uint8Array>();
  private currentItems = new Map<string, Uint8Array>();

  constructor(options: { registry: ProtoRegistry }) {
    this.registry = options.registry;
  }

  /** The encoded resource, or the problems that keep it from being sent (never cached). */
  encode(kind: ResourceKind, name: string, message: ProtoMessage, at: string): { resource: EncodedResource | undefined; problems: Problem[] } {
    const seen = this.byIdentity.get(message);
    if (seen && seen.kind === kind && seen.name === name) return { resource: seen, problems: [] };
    const outcome = this.encodeByContent(kind, name, message, at);
    if (outcome.resource) this.byIdentity.set(message, outcome.resource);
    return outcome;
  }

  private encodeByContent(kind: ResourceKind, name: string, message: ProtoMessage, at: string): { resource: EncodedResource | undefined; problems: Problem[] } {
    const field = PIECEWISE_FIELD[kind];
    const items = field ? message[field] : undefined;
    if (field && Array.isArray(items)) return this.encodePiecewise(kind, name, message, field, items, at, ownProblems(kind, name, message, at));
    const key = `${kind}\0${name}\0${JSON.stringify(message, exactNumbers)}`;
    const known = this.known(key);
    if (known) return { resource: known, problems: [] };
    const result = this.registry.encode(messageNameOf(TYPE_URL[kind]), message, at);
    const problems = [...result.problems, ...ownProblems(kind, name, message, at)];
    if (!result.bytes || problems.length) return { resource: undefined, problems };
    return { resource: this.remember(key, kind, name, result.bytes), problems: [] };
  }

  private encodePiecewise(
    kind: ResourceKind,
    name: string,
    message: ProtoMessage,
    field: string,
    items: unknown[],
    at: string,
    own: Problem[],
  ): { resource: EncodedResource | undefined; problems: Problem[] } {
    const rest = Object.fromEntries(Object.entries(message).filter(([k]) => k !== field));
    const typeName = messageNameOf(TYPE_URL[kind]);
    const problems: Problem[] = [];
    const parts: Uint8Array[] = [];
    // Cached piece by piece (a piece seen before by identity, else by its JSON); the whole is keyed by its bytes' hash.
    [rest, ...items].forEach((item, i) => {
      const head = i === 0;
      const identity = !head && typeof item === "object" && item !== null ? item : undefined;
      let bytes = identity && this.itemsByIdentity.get(identity);
      if (!bytes) {
        const itemKey = `${kind}\0${head ? "" : field}\0${JSON.stringify(item, exactNumbers)}`;
        bytes = this.currentItems.get(itemKey) ?? this.previousItems.get(itemKey);
        if (!bytes) {
          const result = head ? this.registry.encode(typeName, rest, at) : this.registry.encodeRepeatedItem(typeName, field, item, `${at}.${field}[${i - 1}]`);
          problems.push(...result.problems);
          bytes = result.bytes;
        }
        if (!bytes) return;
        this.currentItems.set(itemKey, bytes);
        if (identity) this.itemsByIdentity.set(identity, bytes);
      }
      parts.push(bytes);
    });
    problems.push(...own);
    if (problems.length) return { resource: undefined, problems };
    const bytes = Buffer.concat(parts);
    const hash = sha256(bytes);
    const key = `${kind}\0${name}\0#${hash}`;
    return { resource: this.known(key) ?? this.remember(key, kind, name, bytes, hash), problems: [] };
  }

  private known(key: string): EncodedResource | undefined {
    const known = this.current.get(key) ?? this.previous.get(key);
    if (known) this.current.set(key, known);
    return known;
  }

  private remember(key: string, kind: ResourceKind, name: string, bytes: Uint8Array, hash = sha256(bytes)): EncodedResource {
    const resource: EncodedResource = { kind, name, bytes, hash };
    this.current.set(key, resource);
    return resource;
  }

  /** Drops what was not used since the previous call; call once per applied snapshot. */
  endGeneration(): void {
    this.previous = this.current;
    this.current = new Map();
    this.previousItems = this.currentItems;
    this.currentItems = new Map();
  }

  get size(): number {
    return new Set([...this.previous.keys(), ...this.current.keys()]).size;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("base64url");
}

/** JSON turns NaN and ±Infinity into null, which the encoder reads as unset: keep them apart in cache keys. */
export function exactNumbers(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? `\0${String(value)}` : value;
}

export interface ValidationOutcome {
  /** Present only when every resource passed. */
  encoded: EncodedSet | undefined;
  problems: Problem[];
}

/**
 * The gate before anything is sent: every resource is validated against its
 * proto and the protoc-gen-validate rules (see ProtoRegistry.encode), every
 * reference between resources must resolve, and the invariants data planes
 * enforce on their side are checked here first (EDS priorities without gaps,
 * no address twice in a ClusterLoadAssignment, one listener per address).
 * All problems are collected; nothing is encoded unless there are none.
 */
export function validateAndEncode(cache: EncodedResourceCache, set: ResourceSet): ValidationOutcome {
  const problems: Problem[] = [];
  const encoded = Object.fromEntries(RESOURCE_KINDS.map((k) => [k, new Map<string, EncodedResource>()])) as EncodedSet;
  const listenerAddresses = new Map<string, string>();
  for (const kind of RESOURCE_KINDS) {
    for (const [name, resource] of set[kind]) {
      const at = `${kind}[${name}]`;
      const result = cache.encode(kind, name, resource.message, at);
      problems.push(...result.problems);
      for (const ref of resource.refs) {
        if (!set[ref.kind].has(ref.name)) problems.push({ path: at, message: `refers to missing ${ref.kind} ${ref.name}` });
      }
      if (kind === "listener") {
        const address = listenerAddress(resource.message);
        if (address) {
          const other = listenerAddresses.get(address);
          if (other) problems.push({ path: at, message: `binds ${address}, already bound by listener ${other}` });
          listenerAddresses.set(address, name);
        }
      }
      if (result.resource) encoded[kind].set(name, result.resource);
    }
  }
  return { encoded: problems.length ? undefined : encoded, problems };
}

/** What a resource must satisfy on its own, beyond its proto: cached with it, so checked once per content. */
function ownProblems(kind: ResourceKind, name: string, message: ProtoMessage, at: string): Problem[] {
  const problems: Problem[] = [];
  const declared = kind === "endpoint" ? message.cluster_name : message.name;
  if (declared !== name) problems.push({ path: at, message: `resource is keyed ${name} but names itself ${String(declared)}` });
  if (kind === "endpoint") problems.push(...loadAssignmentProblems(message, at));
  return problems;
}

function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function list(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function listenerAddress(message: Record<string, unknown>): string | undefined {
  const socket = record(record(message.address)?.socket_address);
  return socket ? `${String(socket.address)}:${String(socket.port_value)}` : undefined;
}

/** What gRPC (gRFC A27) and Envoy reject in a ClusterLoadAssignment, checked before they can. */
function loadAssignmentProblems(message: Record<string, unknown>, at: string): Problem[] {
  const problems: Problem[] = [];
  const priorities = new Set<number>();
  const addresses = new Set<string>();
  const localities = new Set<string>();
  list(message.endpoints).forEach((group, i) => {
    const g = record(group);
    const priority = Number(g?.priority ?? 0);
    priorities.add(priority);
    const locality = record(g?.locality);
    const localityKey = `${priority}/${String(locality?.region)}/${String(locality?.zone)}/${String(locality?.sub_zone)}`;
    if (localities.has(localityKey)) problems.push({ path: `${at}.endpoints[${i}].locality`, message: `locality ${localityKey} appears twice at one priority` });
    localities.add(localityKey);
    list(g?.lb_endpoints).forEach((lb, j) => {
      const socket = record(record(record(record(lb)?.endpoint)?.address)?.socket_address);
      const key = `${String(socket?.address)}:${String(socket?.port_value)}`;
      if (addresses.has(key)) problems.push({ path: `${at}.endpoints[${i}].lb_endpoints[${j}]`, message: `address ${key} appears twice` });
      addresses.add(key);
    });
  });
  const max = Math.max(-1, ...priorities);
  for (let p = 0; p < max; p++) if (!priorities.has(p)) problems.push({ path: `${at}.endpoints`, message: `priority ${max} is used but ${p} is not` });
  return problems;
}
