/**
 * Who is calling: the principal an authenticated call acts as. Every principal
 * belongs to exactly one tenant, which is THE tenant of every call it makes
 * (sessions, listings, counters and watches are all per tenant), and carries
 * scopes that decide which RPCs it may call.
 *
 * A principal may act for one user: bound by its credential (a JWT's
 * JWT_USER_CLAIM, an API key or certificate entry's `user`), or named per call
 * by a service principal with scope act_as (the sessiond-act-as header, see
 * delegation.ts). Such a call reaches only that user's sessions, as their
 * access levels allow (session/access-policy.ts).
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * read: Get*, List*, GetSessionMetrics; write: Create, Update, Extend, Close, data writes; watch: WatchSessions;
 * access: changing a session's access level (UpdateSession access_level), on top of write, because the level is
 * what guards the session's data writes; metrics: GET /metrics when AUTH_PROTECT_OPS=true (and nothing else, so a
 * Prometheus scraper's credential cannot read sessions); admin: all of them except act_as; act_as: name the user a
 * call acts for (delegation), granted only on purpose, since the audit log then attributes the call to that user as well.
 */
export type Scope = "read" | "write" | "watch" | "access" | "metrics" | "admin" | "act_as";

export const SCOPES: readonly Scope[] = ["read", "write", "watch", "access", "metrics", "admin", "act_as"];

export interface Principal {
  /** Stable, non-secret identity for audit records and per-principal limits: "key:<id>", "jwt:<sub>", "cert:<cn>", "anonymous". */
  readonly id: string;
  readonly tenant: string;
  readonly scopes: ReadonlySet<Scope>;
  /** The user every call acts for; absent: every user of the tenant (a trusted backend). */
  readonly user?: string;
  /** True when `user` was named by the call (delegation), not bound by the credential. */
  readonly delegated?: boolean;
}

/** True when the principal may do what `scope` allows (admin allows everything but act_as). */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.has(scope) || (scope !== "act_as" && principal.scopes.has("admin"));
}

/**
 * Who a principal is, as audit records name it: the credential's identity and
 * tenant, and the user it acted for (with `delegated` when the call named it),
 * so a delegated call is attributed to both the backend and the user.
 */
export function auditIdentity(principal: Principal): { principal: string; tenant: string; user?: string; delegated?: boolean } {
  return {
    principal: principal.id,
    tenant: principal.tenant,
    ...(principal.user === undefined ? {} : { user: principal.user }),
    ...(principal.delegated === true ? { delegated: true } : {}),
  };
}

/** Longest user id a credential or the act-as header may name (the API's user_id limit). */
export const MAX_USER_LENGTH = 256;

/** A user id as the API accepts user_id: 1-256 characters, no control characters; else what is wrong. */
export function userProblem(user: unknown): string | undefined {
  if (typeof user !== "string" || user === "") return "must be a non-empty string";
  if ([...user].length > MAX_USER_LENGTH) return `must be at most ${MAX_USER_LENGTH} characters`;
  if (/\p{Cc}/u.test(user)) return "must not contain control characters";
  return undefined;
}

/** Turns a list from configuration or a token into scopes; names that are not scopes are ignored. */
export function scopesFrom(names: readonly unknown[]): Set<Scope> {
  const scopes = new Set<Scope>();
  for (const name of names) {
    if (typeof name === "string" && (SCOPES as readonly string[]).includes(name)) scopes.add(name as Scope);
  }
  return scopes;
}

/** Tenant names a credential may carry (the same rule as DEFAULT_TENANT, with '.'). */
export const TENANT_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * The tenant and scopes of one entry of a principals file (API_KEYS_FILE,
 * MTLS_PRINCIPALS_FILE), checked by one rule for every kind of credential:
 * the grant, or what is wrong with it (a message starting with the field).
 * Unlike scopesFrom, an unknown scope name is an error here: a typo in a
 * file must not silently grant less than the operator meant.
 */
export function parseGrant(
  tenant: unknown,
  scopes: unknown,
  user?: unknown,
): { readonly tenant: string; readonly scopes: Set<Scope>; readonly user?: string } | string {
  if (typeof tenant !== "string" || !TENANT_NAME.test(tenant)) return "tenant must be 1-64 letters, digits, '_', '.' or '-'";
  if (!Array.isArray(scopes)) return "scopes must be an array";
  const granted = scopesFrom(scopes);
  if (granted.size !== scopes.length) return `scopes must be among ${SCOPES.join(", ")}`;
  if (user === undefined) return { tenant, scopes: granted };
  const problem = userProblem(user);
  if (problem !== undefined) return `user ${problem}`;
  // A credential bound to a user cannot also speak for other users.
  if (granted.has("act_as")) return "scopes: act_as cannot be granted to an entry bound to a user";
  return { tenant, scopes: granted, user: user as string };
}

/** Set by the auth interceptor on every call it lets through. */
export const PRINCIPAL = createContextKey<Principal | undefined>(undefined, { description: "sessiond principal" });

/** The caller's network identity, captured from the Node request (see peer.ts). */
export interface PeerInfo {
  /** "ip:port", or "" when unknown. */
  readonly address: string;
  /** Common name of a client certificate the TLS layer verified against TLS_CLIENT_CA_FILE; absent otherwise. */
  readonly verifiedCertCommonName?: string;
}

export const PEER = createContextKey<PeerInfo>({ address: "" }, { description: "sessiond peer" });

/**
 * The principal of a call that passed the auth interceptor. Throws (an
 * internal fault, never reached in the app) when the interceptor is missing,
 * so a wiring mistake cannot silently fall back to some default tenant.
 */
export function principalOf(context: HandlerContext): Principal {
  const principal = context.values.get(PRINCIPAL);
  if (principal === undefined) throw new Error("no principal on the call: the auth interceptor is not installed");
  return principal;
}
