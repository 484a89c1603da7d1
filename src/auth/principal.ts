/**
 * Who is calling: the principal an authenticated call acts as. Every principal
 * belongs to exactly one tenant, which is THE tenant of every call it makes
 * (sessions, listings, counters and watches are all per tenant), and carries
 * scopes that decide which RPCs it may call.
 */
import { createContextKey, type HandlerContext } from "@connectrpc/connect";

/**
 * read: Get*, List*, GetSessionMetrics; write: Create, Update, Extend, Close, data writes; watch: WatchSessions;
 * access: changing a session's access level (UpdateSession access_level), on top of write, because the level is
 * what guards the session's data writes; metrics: GET /metrics when AUTH_PROTECT_OPS=true (and nothing else, so a
 * Prometheus scraper's credential cannot read sessions); admin: all of them.
 */
export type Scope = "read" | "write" | "watch" | "access" | "metrics" | "admin";

export const SCOPES: readonly Scope[] = ["read", "write", "watch", "access", "metrics", "admin"];

export interface Principal {
  /** Stable, non-secret identity for audit records and per-principal limits: "key:<id>", "jwt:<sub>", "cert:<cn>", "anonymous". */
  readonly id: string;
  readonly tenant: string;
  readonly scopes: ReadonlySet<Scope>;
}

/** True when the principal may do what `scope` allows (admin allows everything). */
export function hasScope(principal: Principal, scope: Scope): boolean {
  return principal.scopes.has(scope) || principal.scopes.has("admin");
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
export function parseGrant(tenant: unknown, scopes: unknown): { readonly tenant: string; readonly scopes: Set<Scope> } | string {
  if (typeof tenant !== "string" || !TENANT_NAME.test(tenant)) return "tenant must be 1-64 letters, digits, '_', '.' or '-'";
  if (!Array.isArray(scopes)) return "scopes must be an array";
  const granted = scopesFrom(scopes);
  if (granted.size !== scopes.length) return `scopes must be among ${SCOPES.join(", ")}`;
  return { tenant, scopes: granted };
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
