import { z } from "zod";
import type { Problem } from "../common/index.ts";
import { signBundle, type SignedBundle } from "./bundle-signature.ts";
import { parseCertificate, type Certificate } from "./certificate.ts";
import { createSystemClock, type Clock } from "./clock.ts";
import { MalformedInputError, RotationRefusedError, TrustOptionsError } from "./errors.ts";
import type { IntermediateCa } from "./intermediate-ca.ts";
import type { IssuedLeaf } from "./leaf.ts";
import { zodProblems } from "./options.ts";
import type { IssueIntermediateOptions, RootCa } from "./root-ca.ts";
import { isSignedBy } from "./signature.ts";
import { isValidClusterName, isValidTrustDomain } from "./spiffe-id.ts";
import { TrustBundle } from "./trust-bundle.ts";

/**
 * Root rotation as an explicit state machine whose state is plain JSON (persist
 * it anywhere: a ConfigMap, a KV key).
 *
 *   stable ──beginRotation──▶ adding-root ──startReissuing──▶ reissuing
 *     ▲                       (bundle: old+new)              (intermediates, then
 *     │                                                       leaves, under new)
 *     └──────complete────── retiring-old ◀──retireOldRoot───────┘
 *                           (bundle: new)
 *
 * The machine knows, per cluster, which roots its installed bundle holds and
 * which live intermediates and leaves it has (recorded by the caller as they
 * are issued and acknowledged). Each step checks that taking it cannot break
 * mTLS between any pair of clusters, and otherwise refuses with a
 * RotationRefusedError listing every blocker.
 */

export const ROTATION_PHASES = ["stable", "adding-root", "reissuing", "retiring-old"] as const;
export type RotationPhase = (typeof ROTATION_PHASES)[number];

const FINGERPRINT = z.string().regex(/^[0-9a-f]{64}$/);

const IntermediateRecordSchema = z.strictObject({
  fingerprint: FINGERPRINT,
  /** The root that signed it. */
  root: FINGERPRINT,
  notAfter: z.iso.datetime(),
});

const LeafRecordSchema = z.strictObject({
  fingerprint: FINGERPRINT,
  spiffeId: z.string().max(2048),
  /** The intermediate that signed it, and that intermediate's root. */
  intermediate: FINGERPRINT,
  root: FINGERPRINT,
  notAfter: z.iso.datetime(),
});

const ClusterStateSchema = z.strictObject({
  trustedRoots: z.array(FINGERPRINT).max(16),
  /** The intermediate the cluster issues with now (one; a new one supersedes it). */
  intermediates: z.array(IntermediateRecordSchema).max(1),
  /** Live leaves, the newest per SPIFFE ID. */
  leaves: z.array(LeafRecordSchema).max(100_000),
});

const RotationStateSchema = z.strictObject({
  v: z.literal(1),
  trustDomain: z.string().refine(isValidTrustDomain, "not a trust domain"),
  phase: z.enum(ROTATION_PHASES),
  bundleSequence: z.number().int().min(0),
  activeRoot: z.string().max(65_536),
  nextRoot: z.string().max(65_536).optional(),
  clusters: z.record(z.string().refine(isValidClusterName, "not a cluster name"), ClusterStateSchema),
});

/** The persisted form. */
export type RotationState = z.output<typeof RotationStateSchema>;
type ClusterState = z.output<typeof ClusterStateSchema>;
type IssuedRecord = { notAfter: string };

export interface RootRotationOptions {
  trustDomain: string;
  /** The root every cluster trusts today. */
  root: Certificate;
  clusters: readonly string[];
  /** Sequence of the bundle clusters have today; defaults to 1. */
  bundleSequence?: number;
  clock?: Clock;
}

export class RootRotation {
  #state: RotationState;
  #activeRoot: Certificate;
  #nextRoot: Certificate | undefined;
  readonly #clock: Clock;

  private constructor(state: RotationState, activeRoot: Certificate, nextRoot: Certificate | undefined, clock: Clock) {
    this.#state = state;
    this.#activeRoot = activeRoot;
    this.#nextRoot = nextRoot;
    this.#clock = clock;
  }

  /** Starts tracking a stable trust domain: every cluster trusts `root` (bundle `bundleSequence`). */
  static create(options: RootRotationOptions): RootRotation {
    const problems: Problem[] = [];
    if (!isValidTrustDomain(options.trustDomain)) problems.push({ path: "trustDomain", message: "not a trust domain" });
    if (!options.root.isCa) problems.push({ path: "root", message: "not a CA certificate" });
    options.clusters.forEach((c, i) => {
      if (!isValidClusterName(c)) problems.push({ path: `clusters[${i}]`, message: "not a cluster name" });
    });
    if (new Set(options.clusters).size !== options.clusters.length) problems.push({ path: "clusters", message: "duplicate cluster names" });
    if (problems.length) throw new TrustOptionsError("root rotation options", problems);
    const clusters: Record<string, ClusterState> = {};
    for (const c of options.clusters) clusters[c] = { trustedRoots: [options.root.fingerprint], intermediates: [], leaves: [] };
    const state: RotationState = {
      v: 1,
      trustDomain: options.trustDomain,
      phase: "stable",
      bundleSequence: options.bundleSequence ?? 1,
      activeRoot: options.root.pem,
      clusters,
    };
    return new RootRotation(state, options.root, undefined, options.clock ?? createSystemClock());
  }

  /** Restores a machine from its persisted JSON; inconsistent or garbled state is a MalformedInputError. */
  static fromJSON(json: unknown, options: { clock?: Clock } = {}): RootRotation {
    const parsed = RotationStateSchema.safeParse(typeof json === "string" ? safeJson(json) : json);
    if (!parsed.success) throw new MalformedInputError("state", zodProblems(parsed.error.issues).map((p) => `${p.path}: ${p.message}`).join("; "));
    const state = parsed.data;
    const active = parseCertificate(state.activeRoot);
    const next = state.nextRoot === undefined ? undefined : parseCertificate(state.nextRoot);
    if ((state.phase === "stable") !== (next === undefined)) throw new MalformedInputError("state", `phase ${state.phase} ${next ? "must not" : "must"} have a next root`);
    return new RootRotation(structuredClone(state), active, next, options.clock ?? createSystemClock());
  }

  toJSON(): RotationState {
    return structuredClone(this.#state);
  }

  get phase(): RotationPhase {
    return this.#state.phase;
  }

  get trustDomain(): string {
    return this.#state.trustDomain;
  }

  get activeRoot(): Certificate {
    return this.#activeRoot;
  }

  get nextRoot(): Certificate | undefined {
    return this.#nextRoot;
  }

  get clusters(): string[] {
    return Object.keys(this.#state.clusters);
  }

  /** The bundle clusters should have in the current phase. */
  currentBundle(): TrustBundle {
    const { phase, bundleSequence, trustDomain } = this.#state;
    const roots = phase === "stable" ? [this.#activeRoot] : phase === "retiring-old" ? [this.#nextRoot!] : [this.#activeRoot, this.#nextRoot!];
    return TrustBundle.create({ trustDomain, certificates: roots, sequence: bundleSequence, now: this.#clock.now() });
  }

  // -------------------------------------------------------------------------
  // Observations: what clusters have installed and issued.
  // -------------------------------------------------------------------------

  /** A cluster acknowledged installing `bundle`. */
  recordBundleInstalled(cluster: string, bundle: TrustBundle): void {
    const c = this.cluster(cluster);
    if (bundle.trustDomain !== this.#state.trustDomain) throw new TrustOptionsError("bundle", [{ path: "trustDomain", message: `is ${bundle.trustDomain}, not ${this.#state.trustDomain}` }]);
    c.trustedRoots = bundle.certificates.map((cert) => cert.fingerprint);
  }

  /**
   * A cluster now issues with `intermediate` (superseding its previous one;
   * leaves already issued under the previous one stay recorded until replaced
   * or expired). Refused if its root is not the one the current phase issues under.
   */
  recordIntermediate(cluster: string, intermediate: Certificate): void {
    const c = this.cluster(cluster);
    const root = this.rootOf(intermediate);
    const blockers: Problem[] = [];
    const usingNext = root === this.#nextRoot;
    if (!root) blockers.push({ path: `clusters.${cluster}`, message: "intermediate is signed by neither the active nor the next root" });
    else if (usingNext && this.phase !== "reissuing") blockers.push({ path: `clusters.${cluster}`, message: `intermediates move to the new root only in phase reissuing (now ${this.phase})` });
    else if (!usingNext && (this.phase === "reissuing" || this.phase === "retiring-old")) {
      blockers.push({ path: `clusters.${cluster}`, message: "intermediate chains to the root being retired" });
    }
    if (blockers.length) throw new RotationRefusedError("record-intermediate", this.phase, blockers);
    c.intermediates = [{ fingerprint: intermediate.fingerprint, root: root!.fingerprint, notAfter: intermediate.notAfter.toISOString() }];
  }

  /** A cluster now serves `leaf` (the newest leaf per SPIFFE ID replaces older ones). */
  recordLeaf(cluster: string, leaf: IssuedLeaf): void {
    const c = this.cluster(cluster);
    const intermediate = leaf.chain[1];
    const root = intermediate && isSignedBy(leaf.certificate, intermediate.publicKey) ? this.rootOf(intermediate) : undefined;
    const blockers: Problem[] = [];
    if (!intermediate || !root) blockers.push({ path: `clusters.${cluster}`, message: "leaf does not chain to the active or the next root" });
    else if (root === this.#activeRoot && this.phase === "retiring-old") blockers.push({ path: `clusters.${cluster}`, message: "leaf chains to the root being retired" });
    else if (root === this.#nextRoot && this.phase !== "reissuing" && this.phase !== "retiring-old") {
      blockers.push({ path: `clusters.${cluster}`, message: `leaves move to the new root only in phase reissuing (now ${this.phase})` });
    }
    if (blockers.length) throw new RotationRefusedError("record-leaf", this.phase, blockers);
    c.leaves = c.leaves.filter((r) => r.spiffeId !== leaf.spiffeId);
    c.leaves.push({
      fingerprint: leaf.certificate.fingerprint,
      spiffeId: leaf.spiffeId,
      intermediate: intermediate!.fingerprint,
      root: root!.fingerprint,
      notAfter: leaf.certificate.notAfter.toISOString(),
    });
  }

  // -------------------------------------------------------------------------
  // Steps.
  // -------------------------------------------------------------------------

  /** What stands in the way of `step` right now (empty if it may be taken). */
  blockers(step: "begin" | "start-reissuing" | "reissue" | "retire" | "complete"): Problem[] {
    this.prune();
    const phase = this.phase;
    const wrongPhase = (expected: RotationPhase): Problem[] => (phase === expected ? [] : [{ path: "phase", message: `must be ${expected}, is ${phase}` }]);
    const entries = Object.entries(this.#state.clusters);
    const next = this.#nextRoot?.fingerprint;
    const active = this.#activeRoot.fingerprint;
    switch (step) {
      case "begin":
        return wrongPhase("stable");
      case "start-reissuing":
        return [...wrongPhase("adding-root"), ...this.bundleBlockers()];
      case "reissue":
        if (phase === "adding-root") return [{ path: "phase", message: "is adding-root; reissuing starts once every cluster trusts the new root" }, ...this.bundleBlockers()];
        return [...wrongPhase("reissuing"), ...this.bundleBlockers()];
      case "retire": {
        const out = wrongPhase("reissuing");
        for (const [name, c] of entries) {
          if (!c.intermediates.some((r) => r.root === next)) out.push({ path: `clusters.${name}.intermediates`, message: "still issues with an intermediate under the old root" });
          for (const r of c.leaves) if (r.root === active) out.push({ path: `clusters.${name}.leaves`, message: `${r.spiffeId} still chains only to the old root` });
          if (!next || !c.trustedRoots.includes(next)) out.push({ path: `clusters.${name}`, message: "does not trust the new root" });
        }
        return out;
      }
      case "complete": {
        const out = wrongPhase("retiring-old");
        for (const [name, c] of entries) {
          if (c.trustedRoots.includes(active) || !next || !c.trustedRoots.includes(next)) out.push({ path: `clusters.${name}`, message: "has not installed the bundle without the old root" });
        }
        return out;
      }
    }
  }

  /**
   * stable → adding-root. Publishes a bundle holding both roots, signed by the
   * current root (so every cluster accepts it) and the new one.
   */
  async beginRotation(options: { currentRoot: RootCa; newRoot: RootCa }): Promise<SignedBundle> {
    const blockers = this.blockers("begin");
    if (options.currentRoot.fingerprint !== this.#activeRoot.fingerprint) blockers.push({ path: "currentRoot", message: "is not the active root" });
    if (options.newRoot.trustDomain !== this.trustDomain) blockers.push({ path: "newRoot", message: `belongs to ${options.newRoot.trustDomain}` });
    if (options.newRoot.fingerprint === this.#activeRoot.fingerprint) blockers.push({ path: "newRoot", message: "is the active root" });
    if (options.newRoot.certificate.notAfter <= this.#clock.now()) blockers.push({ path: "newRoot", message: "has expired" });
    if (blockers.length) throw new RotationRefusedError("begin", this.phase, blockers);
    this.#nextRoot = options.newRoot.certificate;
    this.#state.nextRoot = options.newRoot.certPem;
    this.#state.phase = "adding-root";
    this.#state.bundleSequence++;
    return signBundle(this.currentBundle(), [options.currentRoot, options.newRoot]);
  }

  /** adding-root → reissuing, once every cluster trusts both roots. */
  startReissuing(): void {
    const blockers = this.blockers("start-reissuing");
    if (blockers.length) throw new RotationRefusedError("start-reissuing", this.phase, blockers);
    this.#state.phase = "reissuing";
  }

  /** Issues (and records) a cluster's intermediate under the new root. Only in phase reissuing. */
  async reissueIntermediate(options: { newRoot: RootCa } & IssueIntermediateOptions): Promise<IntermediateCa> {
    const { newRoot, ...intermediateOptions } = options;
    const blockers = this.blockers("reissue");
    if (newRoot.fingerprint !== this.#nextRoot?.fingerprint) blockers.push({ path: "newRoot", message: "is not the rotation's new root" });
    this.cluster(options.cluster);
    if (blockers.length) throw new RotationRefusedError("reissue", this.phase, blockers);
    const intermediate = await newRoot.issueIntermediate(intermediateOptions);
    this.recordIntermediate(options.cluster, intermediate.certificate);
    return intermediate;
  }

  /**
   * reissuing → retiring-old, once nothing live chains to the old root.
   * Publishes a bundle holding only the new root, signed by both roots.
   */
  async retireOldRoot(options: { oldRoot: RootCa; newRoot: RootCa }): Promise<SignedBundle> {
    const blockers = this.blockers("retire");
    if (options.oldRoot.fingerprint !== this.#activeRoot.fingerprint) blockers.push({ path: "oldRoot", message: "is not the root being retired" });
    if (options.newRoot.fingerprint !== this.#nextRoot?.fingerprint) blockers.push({ path: "newRoot", message: "is not the rotation's new root" });
    if (blockers.length) throw new RotationRefusedError("retire", this.phase, blockers);
    this.#state.phase = "retiring-old";
    this.#state.bundleSequence++;
    return signBundle(this.currentBundle(), [options.newRoot, options.oldRoot]);
  }

  /** retiring-old → stable, once every cluster has installed the bundle without the old root. */
  complete(): void {
    const blockers = this.blockers("complete");
    if (blockers.length) throw new RotationRefusedError("complete", this.phase, blockers);
    const old = this.#activeRoot.fingerprint;
    this.#activeRoot = this.#nextRoot!;
    this.#nextRoot = undefined;
    this.#state.activeRoot = this.#activeRoot.pem;
    delete this.#state.nextRoot;
    this.#state.phase = "stable";
    for (const c of Object.values(this.#state.clusters)) {
      c.intermediates = c.intermediates.filter((r) => r.root !== old);
      c.leaves = c.leaves.filter((r) => r.root !== old);
    }
  }

  // -------------------------------------------------------------------------

  /** Clusters whose installed bundle lacks either root while both anchor live identities. */
  private bundleBlockers(): Problem[] {
    const next = this.#nextRoot?.fingerprint;
    const active = this.#activeRoot.fingerprint;
    const out: Problem[] = [];
    for (const [name, c] of Object.entries(this.#state.clusters)) {
      if (!next || !c.trustedRoots.includes(next)) out.push({ path: `clusters.${name}`, message: "has not installed a bundle containing the new root; its peers could not verify identities issued under it" });
      if (!c.trustedRoots.includes(active)) out.push({ path: `clusters.${name}`, message: "no longer trusts the old root, which still anchors live identities" });
    }
    return out;
  }

  private cluster(name: string): ClusterState {
    const c = this.#state.clusters[name];
    if (!c) throw new TrustOptionsError("cluster", [{ path: "cluster", message: `unknown cluster ${JSON.stringify(name)}` }]);
    return c;
  }

  private rootOf(intermediate: Certificate): Certificate | undefined {
    return [this.#activeRoot, this.#nextRoot].find((r) => r !== undefined && isSignedBy(intermediate, r.publicKey));
  }

  /** Forgets expired intermediates and leaves: they anchor nothing any more. */
  private prune(): void {
    const now = this.#clock.now().getTime();
    const live = (r: IssuedRecord) => Date.parse(r.notAfter) > now;
    for (const c of Object.values(this.#state.clusters)) {
      c.intermediates = c.intermediates.filter(live);
      c.leaves = c.leaves.filter(live);
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new MalformedInputError("state", "not valid JSON", { cause: err });
  }
}
