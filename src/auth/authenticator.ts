/**
 * Turns a call's credentials into a principal: a bearer token in the
 * `authorization` header (an API key, else a JWT), or with no header a client
 * certificate verified by mutual TLS. A presented token that does not verify
 * is a failure even when a certificate would have passed: a caller that sends
 * a bad token has a bug or is guessing.
 *
 * With no authentication configured at all, every call is the anonymous
 * principal of DEFAULT_TENANT with every scope (startup refuses that on a
 * non-loopback address unless ALLOW_INSECURE=true; see startup-checks.ts).
 *
 * The act-as header is part of a call's credentials (delegation.ts): every
 * path that authenticates a call passes it here, so no path can ignore it.
 */
import { readFileSync } from "node:fs";
import { ConfigError, type Config } from "../config/config.js";
import { ApiKeyError, ApiKeys } from "./api-keys.js";
import { JwtConfigError, JwtVerifier } from "./jwt.js";
import { CertPrincipals, CertPrincipalsError } from "./mtls.js";
import { applyDelegation } from "./delegation.js";
import { SCOPES, type PeerInfo, type Principal } from "./principal.js";

/** Longest authorization header considered (a JWT with many claims stays far below). */
const MAX_TOKEN_LENGTH = 8192;

export interface AuthenticatorParts {
  readonly apiKeys?: ApiKeys;
  readonly jwt?: JwtVerifier;
  readonly certs?: CertPrincipals;
  /** Tenant of the anonymous principal when nothing is configured. */
  readonly defaultTenant: string;
}

/** What a call presents, from its headers (null when a header is absent). */
export interface CallCredentials {
  /** The `authorization` header. */
  readonly authorization: string | null;
  /** The `sessiond-act-as` header (ACT_AS_HEADER). */
  readonly actAs: string | null;
}

/** The principal a call acts as, or why it has none. */
export type Authentication =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly outcome: "unauthenticated" }
  /** The credential is valid but its act-as header is refused; `principal` is the credential's, for the audit record. */
  | { readonly ok: false; readonly outcome: "permission_denied" | "invalid_argument"; readonly message: string; readonly principal: Principal };

export class Authenticator {
  /** True when any credential type is configured (then anonymous calls are refused). */
  readonly configured: boolean;
  private readonly anonymous: Principal;

  constructor(private readonly parts: AuthenticatorParts) {
    this.configured = parts.apiKeys !== undefined || parts.jwt !== undefined || parts.certs !== undefined;
    this.anonymous = { id: "anonymous", tenant: parts.defaultTenant, scopes: new Set(SCOPES) };
  }

  /**
   * The principal the call acts as: its credential's, acting for the act-as header's user when it names one.
   * At once (no promise) unless a JWT needs verifying.
   */
  authenticate(credentials: CallCredentials, peer: PeerInfo): Authentication | Promise<Authentication> {
    const principal = this.credentialPrincipal(credentials.authorization, peer);
    if (principal instanceof Promise) return principal.then((verified) => actingAs(verified, credentials.actAs));
    return actingAs(principal, credentials.actAs);
  }

  /** The credential's principal, or undefined when the call must fail with UNAUTHENTICATED. */
  private credentialPrincipal(authorization: string | null, peer: PeerInfo): Principal | undefined | Promise<Principal | undefined> {
    if (!this.configured) return this.anonymous;
    if (authorization !== null) {
      const token = bearerToken(authorization);
      if (token === undefined) return undefined;
      const byKey = this.parts.apiKeys?.verify(token);
      if (byKey !== undefined) return byKey;
      if (this.parts.jwt !== undefined && looksLikeJwt(token)) return this.parts.jwt.verify(token);
      return undefined;
    }
    if (peer.verifiedCertCommonName !== undefined) return this.parts.certs?.principal(peer.verifiedCertCommonName);
    return undefined;
  }
}

function actingAs(principal: Principal | undefined, actAs: string | null): Authentication {
  if (principal === undefined) return { ok: false, outcome: "unauthenticated" };
  const delegation = applyDelegation(principal, actAs);
  return delegation.ok ? delegation : { ...delegation, principal };
}

/** "Bearer <token>" (scheme case-insensitive, RFC 6750); undefined for anything else. */
function bearerToken(header: string): string | undefined {
  if (header.length > MAX_TOKEN_LENGTH) return undefined;
  const match = /^Bearer +([\x21-\x7e]+) *$/i.exec(header);
  return match?.[1];
}

function looksLikeJwt(token: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(token);
}

/** Reads the configured credential files. Throws ConfigError naming the variable. */
export function loadAuthenticator(config: Config): Authenticator {
  const { auth } = config;
  const apiKeys = auth.apiKeysFile === undefined ? undefined : parseFile("API_KEYS_FILE", auth.apiKeysFile, (text) => ApiKeys.parse(text));
  const certs = auth.mtlsPrincipalsFile === undefined ? undefined : parseFile("MTLS_PRINCIPALS_FILE", auth.mtlsPrincipalsFile, (text) => CertPrincipals.parse(text));
  let jwt: JwtVerifier | undefined;
  if (auth.jwt !== undefined) {
    try {
      jwt = new JwtVerifier(auth.jwt);
    } catch (error) {
      if (error instanceof JwtConfigError) throw new ConfigError(error.message);
      throw error;
    }
  }
  return new Authenticator({
    ...(apiKeys === undefined ? {} : { apiKeys }),
    ...(jwt === undefined ? {} : { jwt }),
    ...(certs === undefined ? {} : { certs }),
    defaultTenant: config.defaultTenant,
  });
}

function parseFile<T>(variable: string, path: string, parse: (text: string) => T): T {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${variable}: cannot read ${JSON.stringify(path)} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
  try {
    return parse(text);
  } catch (error) {
    if (error instanceof ApiKeyError || error instanceof CertPrincipalsError) throw new ConfigError(`${variable}: ${error.message}`);
    throw error;
  }
}
