/**
 * JWT bearer tokens, verified with jose: HS256 with a shared secret
 * (JWT_HS256_SECRET[_FILE]) and RS256/ES256 with the public keys of a JWKS
 * file (JWT_JWKS_FILE). Every token must carry exp, and match JWT_ISSUER and
 * JWT_AUDIENCE; the algorithm is taken from the configuration, never trusted
 * from the token ("none" and algorithm confusion are refused by jose's
 * allow-list).
 *
 * Claims: `sub` is the principal (required), the JWT_TENANT_CLAIM claim
 * (default "tenant") its tenant (required), and the JWT_SCOPES_CLAIM claim
 * (default "scope") its scopes, as an OAuth-style space-separated string or an
 * array; names other than read, write, watch, metrics, admin and act_as are
 * ignored. With JWT_USER_CLAIM set, a token carrying that claim is bound to
 * that user (principal.ts); a token whose claim is present but not a valid
 * user id is refused, never taken as acting for every user.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from "jose";
import type { JwtConfig } from "../config/config.js";
import { scopesFrom, TENANT_NAME, userProblem, type Principal } from "./principal.js";

export class JwtConfigError extends Error {
  override readonly name = "JwtConfigError";
}

export class JwtVerifier {
  private readonly getKey: JWTVerifyGetKey;
  private readonly algorithms: string[];

  constructor(private readonly config: JwtConfig) {
    const secret = config.hs256Secret === undefined ? undefined : new TextEncoder().encode(config.hs256Secret);
    const jwks = config.jwksFile === undefined ? undefined : createLocalJWKSet(readJwks(config.jwksFile));
    this.algorithms = [...(secret === undefined ? [] : ["HS256"]), ...(jwks === undefined ? [] : ["RS256", "ES256"])];
    this.getKey = async (header, token) => {
      if (header.alg === "HS256") {
        if (secret === undefined) throw new Error("HS256 is not configured");
        return secret;
      }
      if (jwks === undefined) throw new Error("no JWKS is configured");
      return jwks(header, token);
    };
  }

  /** The token's principal, or undefined when it does not verify (any reason: the caller only learns "unauthenticated"). */
  async verify(token: string): Promise<Principal | undefined> {
    try {
      const { payload } = await jwtVerify(token, this.getKey, {
        algorithms: this.algorithms,
        issuer: this.config.issuer,
        audience: this.config.audience,
        clockTolerance: this.config.clockToleranceMs / 1000,
        requiredClaims: ["exp", "sub"],
      });
      const tenant = payload[this.config.tenantClaim];
      if (typeof tenant !== "string" || !TENANT_NAME.test(tenant) || typeof payload.sub !== "string" || payload.sub === "") return undefined;
      const claim = payload[this.config.scopesClaim];
      const names = typeof claim === "string" ? claim.split(" ") : Array.isArray(claim) ? claim : [];
      const principal: Principal = { id: jwtPrincipalId(payload.sub), tenant, scopes: scopesFrom(names) };
      const userClaim = this.config.userClaim;
      if (userClaim === undefined || !Object.hasOwn(payload, userClaim)) return principal;
      const user = payload[userClaim];
      if (userProblem(user) !== undefined) return undefined;
      const scopes = new Set(principal.scopes);
      // A token that acts for one user cannot also speak for others.
      scopes.delete("act_as");
      return { ...principal, scopes, user: user as string };
    } catch {
      return undefined;
    }
  }
}

/** Longest `sub` kept as it is in a principal id. */
export const MAX_PLAIN_SUB = 128;

/**
 * "jwt:<sub>", or for a longer sub "jwt#<sha256 hex of sub>": ids stay short
 * (audit records, per-principal limits) while two subs that share a prefix
 * stay two principals. '#' keeps the hashed form apart from any plain sub.
 */
export function jwtPrincipalId(sub: string): string {
  if (sub.length <= MAX_PLAIN_SUB) return `jwt:${sub}`;
  return `jwt#${createHash("sha256").update(sub, "utf8").digest("hex")}`;
}

function readJwks(path: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new JwtConfigError(`JWT_JWKS_FILE: cannot read a JSON JWKS from ${JSON.stringify(path)} (${error instanceof SyntaxError ? "invalid JSON" : ((error as NodeJS.ErrnoException).code ?? "error")})`);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new JwtConfigError("JWT_JWKS_FILE must hold { \"keys\": [ ... ] } with at least one key");
  for (const key of keys as Record<string, unknown>[]) {
    if ("d" in key) throw new JwtConfigError("JWT_JWKS_FILE holds a private key: give the public keys only");
  }
  return parsed as JSONWebKeySet;
}
