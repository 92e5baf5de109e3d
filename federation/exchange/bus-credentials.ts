import { decode, encodeAccount, encodeOperator, encodeUser, fmtCreds, type Account, type Operator, type OperatorLimits, type User } from "@nats-io/jwt";
import { createAccount, createOperator, createUser, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { credsAuthenticator, type Authenticator } from "@nats-io/transport-node";
import { z } from "zod";
import { ValidationError, type Problem } from "../../common/index.ts";
import { DEFAULT_BUCKETS, type BucketNames } from "./buckets.ts";
import { BusOptionsError, adminPolicy, bucketNameProblems, clusterPolicy, type BusUserPolicy } from "./bus-permissions.ts";
import { dnsLabelProblems } from "./dns-label.ts";

/**
 * NATS decentralized (JWT) auth for one ClusterSet, minted without `nsc`.
 *
 * One operator signs two accounts: the system account the server requires,
 * and the ClusterSet account that holds the KV buckets. The ClusterSet account
 * signs one user per cluster, and one admin user. Every user's JWT carries the
 * publish/subscribe allow-lists of `bus-permissions.ts`, so the server itself
 * refuses a cluster writing another cluster's keys. Connect with
 * `connectOptionsFor(credentials)`: it also sets the inbox prefix those
 * lists expect.
 */

/** A key pair with the JWT that names it; `seed` is the secret. */
export interface BusIdentity {
  readonly publicKey: string;
  readonly seed: string;
  readonly jwt: string;
}

/**
 * Everything needed to configure the servers and mint users. Plain JSON, so it
 * can live in a Kubernetes Secret; load it back with `parseBusAuthority`.
 */
export interface BusAuthority {
  readonly v: 1;
  readonly clusterSet: string;
  readonly buckets: BucketNames;
  readonly operator: BusIdentity;
  readonly systemAccount: BusIdentity;
  /** The ClusterSet account: its JetStream holds the buckets, its seed signs users. */
  readonly account: BusIdentity;
}

/** One user's credentials; `creds` is the text of a NATS `.creds` file. */
export interface BusCredentials {
  readonly jwt: string;
  readonly seed: string;
  readonly creds: string;
  /** The only inbox prefix this user may subscribe under; `connectOptionsFor` sets it. */
  readonly inboxPrefix: string;
}

/** A stored authority is malformed or its keys and JWTs do not belong together. */
export class BusAuthorityError extends ValidationError {
  constructor(problems: readonly Problem[]) {
    super("FEDGATE_BUS_BAD_AUTHORITY", "bus authority", problems);
  }
}

/**
 * Account limits; -1 is "unlimited". JetStream is off for an account whose JWT
 * sets no JetStream limits. The core limits are spelled out because a JWT
 * that omits them decodes as zero on the server.
 */
const ACCOUNT_LIMITS: Readonly<OperatorLimits> = Object.freeze({
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
});

/** Creates a fresh operator, system account and ClusterSet account. */
export async function createBusAuthority(options: { clusterSet: string; buckets?: BucketNames }): Promise<BusAuthority> {
  const buckets = { ...(options.buckets ?? DEFAULT_BUCKETS) };
  const problems = [...dnsLabelProblems(options.clusterSet, "clusterSet"), ...bucketNameProblems(buckets)];
  if (problems.length > 0) throw new BusOptionsError("bus authority options", problems);

  const operator = createOperator();
  const system = createAccount();
  const account = createAccount();
  const operatorClaims: Partial<Operator> = { system_account: system.getPublicKey() };
  const accountClaims: Partial<Account> = { limits: { ...ACCOUNT_LIMITS } };
  return {
    v: 1,
    clusterSet: options.clusterSet,
    buckets,
    operator: identity(operator, await encodeOperator(`fedgate-${options.clusterSet}`, operator, operatorClaims)),
    systemAccount: identity(system, await encodeAccount("SYS", system, {}, { signer: operator })),
    account: identity(account, await encodeAccount(`fedgate-${options.clusterSet}`, account, accountClaims, { signer: operator })),
  };
}

/**
 * The nats-server configuration block for this authority: trust the operator,
 * name the system account, and preload both account JWTs into a memory
 * resolver. Append it to every node's config (test/env `startNats({ serverConfig })`).
 */
export function serverAuthConfig(authority: BusAuthority): string {
  return [
    `operator: ${authority.operator.jwt}`,
    `system_account: ${authority.systemAccount.publicKey}`,
    "resolver: MEMORY",
    "resolver_preload: {",
    `  ${authority.systemAccount.publicKey}: ${authority.systemAccount.jwt}`,
    `  ${authority.account.publicKey}: ${authority.account.jwt}`,
    "}",
    "",
  ].join("\n");
}

/** Credentials for cluster `cluster`: it writes only its own keys. Throws `BusClusterNameError` for a bad name. */
export async function mintClusterCredentials(authority: BusAuthority, cluster: string): Promise<BusCredentials> {
  return mintUser(authority, clusterPolicy({ cluster, buckets: authority.buckets }));
}

/** Credentials for the ClusterSet admin: creates the buckets, writes the trust bundle, reads everything. */
export async function mintAdminCredentials(authority: BusAuthority): Promise<BusCredentials> {
  return mintUser(authority, adminPolicy(authority.buckets));
}

/**
 * Options for `connect()` of `@nats-io/transport-node`: authenticate as
 * `credentials`, and put every reply and watch inbox under the user's own
 * prefix (JetStream clients of the connection inherit it).
 */
export function connectOptionsFor(credentials: Pick<BusCredentials, "creds" | "inboxPrefix">): { authenticator: Authenticator; inboxPrefix: string } {
  return { authenticator: credsAuthenticator(new TextEncoder().encode(credentials.creds)), inboxPrefix: credentials.inboxPrefix };
}

async function mintUser(authority: BusAuthority, policy: BusUserPolicy): Promise<BusCredentials> {
  const signer = fromSeed(new TextEncoder().encode(authority.account.seed));
  const user = createUser();
  const claims: Partial<User> = {
    pub: { allow: [...policy.publish] },
    sub: { allow: [...policy.subscribe] },
    // Bearer tokens would let anyone holding the JWT connect without the seed.
    bearer_token: false,
    // Leaf-node connections interpret pub/sub permissions differently; only plain clients are foreseen.
    allowed_connection_types: ["STANDARD"],
  };
  const jwt = await encodeUser(`${authority.clusterSet}/${policy.name}`, user, signer, claims);
  const seed = new TextDecoder().decode(user.getSeed());
  return { jwt, seed, creds: new TextDecoder().decode(fmtCreds(jwt, user)), inboxPrefix: policy.inboxPrefix };
}

function identity(keys: KeyPair, jwt: string): BusIdentity {
  return { publicKey: keys.getPublicKey(), seed: new TextDecoder().decode(keys.getSeed()), jwt };
}

const IdentitySchema = z.strictObject({ publicKey: z.string().max(64), seed: z.string().max(64), jwt: z.string().max(16_384) });
const AuthoritySchema = z.strictObject({
  v: z.literal(1),
  clusterSet: z.string().max(253),
  buckets: z.strictObject({ clusters: z.string().max(256), exports: z.string().max(256), trust: z.string().max(256) }),
  operator: IdentitySchema,
  systemAccount: IdentitySchema,
  account: IdentitySchema,
});

/**
 * Parses a stored authority (e.g. from a Secret), checking that every seed
 * matches its public key, every JWT names that key and carries a valid
 * signature by the expected issuer. Reports every problem at once.
 */
export function parseBusAuthority(value: unknown): BusAuthority {
  const parsed = AuthoritySchema.safeParse(value);
  if (!parsed.success) {
    throw new BusAuthorityError(parsed.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message })));
  }
  const authority = parsed.data;
  const problems = [...dnsLabelProblems(authority.clusterSet, "clusterSet"), ...bucketNameProblems(authority.buckets)];
  const operatorKey = authority.operator.publicKey;
  problems.push(...identityProblems({ path: "operator", identity: authority.operator, prefix: "O", issuer: operatorKey }));
  problems.push(...identityProblems({ path: "systemAccount", identity: authority.systemAccount, prefix: "A", issuer: operatorKey }));
  problems.push(...identityProblems({ path: "account", identity: authority.account, prefix: "A", issuer: operatorKey }));
  if (problems.length > 0) throw new BusAuthorityError(problems);
  return authority;
}

function identityProblems(options: { path: string; identity: BusIdentity; prefix: "O" | "A"; issuer: string }): Problem[] {
  const { path, identity, prefix, issuer } = options;
  const problems: Problem[] = [];
  if (!identity.seed.startsWith(`S${prefix}`)) problems.push({ path: `${path}.seed`, message: `must be an ${prefix === "O" ? "operator" : "account"} seed (S${prefix}...)` });
  else {
    try {
      if (fromSeed(new TextEncoder().encode(identity.seed)).getPublicKey() !== identity.publicKey) {
        problems.push({ path: `${path}.seed`, message: "does not belong to publicKey" });
      }
    } catch (err) {
      problems.push({ path: `${path}.seed`, message: `is not a valid nkey seed (${String(err)})` });
    }
  }
  try {
    // decode() verifies the signature against the `iss` the JWT names; we then check that `iss` is the expected one.
    const claims = decode<unknown>(identity.jwt);
    if (claims.sub !== identity.publicKey) problems.push({ path: `${path}.jwt`, message: "does not name publicKey as its subject" });
    if (claims.iss !== issuer) problems.push({ path: `${path}.jwt`, message: "is not signed by the operator" });
  } catch (err) {
    problems.push({ path: `${path}.jwt`, message: `is not a valid NATS JWT (${String(err)})` });
  }
  return problems;
}
