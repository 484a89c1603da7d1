/**
 * Credentials for tests of authentication: an API keys file (hashes only),
 * HS256 and RS256/ES256 JWTs made with jose, and clients that send them.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from "jose";
import { apiKeyHash } from "../../src/auth/api-keys.js";
import { createSessionClient, type SessionClient } from "@sessiond/client";

export const ISSUER = "https://issuer.test";
export const AUDIENCE = "sessiond-test";
export const HS_SECRET = "an-hs256-secret-of-at-least-32-bytes!!";

export interface TestKey {
  readonly id: string;
  readonly key: string;
  readonly tenant: string;
  readonly scopes: readonly string[];
}

/** A fresh temporary directory. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "sessiond-auth-"));
}

/** Writes API_KEYS_FILE for the keys (as hashes) and returns its path. */
export function writeApiKeysFile(dir: string, keys: readonly TestKey[]): string {
  const path = join(dir, "api-keys.json");
  writeFileSync(path, JSON.stringify(keys.map((k) => ({ id: k.id, sha256: apiKeyHash(k.key), tenant: k.tenant, scopes: k.scopes }))));
  return path;
}

/** A client that sends `authorization: Bearer <token>` (or the raw header given). */
export function clientWith(url: string, authorization: string | undefined, timeoutMs = 5000): SessionClient {
  return createSessionClient(url, {
    timeoutMs,
    interceptors:
      authorization === undefined
        ? []
        : [
            (next) => async (req) => {
              req.header.set("authorization", authorization);
              return next(req);
            },
          ],
  });
}

export interface JwtClaims {
  readonly sub?: string;
  readonly tenant?: string;
  readonly scope?: string | readonly string[];
  readonly iss?: string;
  readonly aud?: string;
  /** Seconds from now; negative: already expired. Default 300. */
  readonly expiresIn?: number;
  readonly noExp?: boolean;
}

async function sign(alg: string, key: CryptoKey | Uint8Array, claims: JwtClaims, kid?: string): Promise<string> {
  const payload: Record<string, unknown> = {};
  if (claims.tenant !== undefined) payload["tenant"] = claims.tenant;
  if (claims.scope !== undefined) payload["scope"] = claims.scope;
  let jwt = new SignJWT(payload)
    .setProtectedHeader(kid === undefined ? { alg } : { alg, kid })
    .setIssuedAt()
    .setIssuer(claims.iss ?? ISSUER)
    .setAudience(claims.aud ?? AUDIENCE);
  if (claims.sub !== undefined) jwt = jwt.setSubject(claims.sub);
  if (claims.noExp !== true) jwt = jwt.setExpirationTime(Math.floor(Date.now() / 1000) + (claims.expiresIn ?? 300));
  return jwt.sign(key);
}

export function hs256(claims: JwtClaims, secret = HS_SECRET): Promise<string> {
  return sign("HS256", new TextEncoder().encode(secret), claims);
}

export interface Jwks {
  readonly path: string;
  rs256(claims: JwtClaims): Promise<string>;
  es256(claims: JwtClaims): Promise<string>;
  /** Signed by a key that is not in the file. */
  foreignRs256(claims: JwtClaims): Promise<string>;
}

/** Generates RS256 and ES256 key pairs and writes the public keys as a JWKS file. */
export async function writeJwks(dir: string): Promise<Jwks> {
  const rs = await generateKeyPair("RS256");
  const es = await generateKeyPair("ES256");
  const foreign = await generateKeyPair("RS256");
  const keys = [
    { ...(await exportJWK(rs.publicKey)), kid: "rs", alg: "RS256", use: "sig" },
    { ...(await exportJWK(es.publicKey)), kid: "es", alg: "ES256", use: "sig" },
  ];
  const path = join(dir, "jwks.json");
  writeFileSync(path, JSON.stringify({ keys }));
  return {
    path,
    rs256: (claims) => sign("RS256", rs.privateKey, claims, "rs"),
    es256: (claims) => sign("ES256", es.privateKey, claims, "es"),
    foreignRs256: (claims) => sign("RS256", foreign.privateKey, claims, "rs"),
  };
}
