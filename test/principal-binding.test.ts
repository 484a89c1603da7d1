/**
 * How a credential binds a principal to a user and how delegation names one
 * (issue 17), at the unit level: API key and certificate entries with `user`,
 * JWT_USER_CLAIM, the act-as header's rules, the access policy's filters, and
 * the configuration of JWT_USER_CLAIM.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ApiKeyError, ApiKeys, apiKeyHash } from "../src/auth/api-keys.js";
import { applyDelegation } from "../src/auth/delegation.js";
import { JwtVerifier } from "../src/auth/jwt.js";
import { CertPrincipals, CertPrincipalsError } from "../src/auth/mtls.js";
import { hasScope, type Principal } from "../src/auth/principal.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { ownFilter, updateLevel } from "../src/session/access-policy.js";
import { AUDIENCE, hs256, HS_SECRET, ISSUER } from "./support/auth.js";

const HASH = apiKeyHash("the-key");
const entry = (extra: Record<string, unknown>): string => JSON.stringify([{ id: "k", sha256: HASH, tenant: "acme", scopes: ["read"], ...extra }]);

describe("API key and certificate entries naming a user", () => {
  test("an entry's user binds its principal; without one the principal acts for every user", () => {
    assert.equal(ApiKeys.parse(entry({ user: "carol" })).verify("the-key")?.user, "carol");
    assert.equal(ApiKeys.parse(entry({})).verify("the-key")?.user, undefined);
    assert.equal(CertPrincipals.parse(JSON.stringify([{ cn: "kiosk", tenant: "acme", scopes: ["read"], user: "carol" }])).principal("kiosk")?.user, "carol");
  });

  test("a bad user, or act_as on an entry bound to a user, stops the start naming the entry and never echoing the value", () => {
    for (const user of ["", 7, "a\u0000b", "x".repeat(257)]) {
      assert.throws(
        () => ApiKeys.parse(entry({ user })),
        (e: unknown) => e instanceof ApiKeyError && /^entry 1 \(k\): user must/.test(e.message) && !e.message.includes("\u0000"),
      );
    }
    assert.throws(() => ApiKeys.parse(entry({ user: "carol", scopes: ["read", "act_as"] })), (e: unknown) => e instanceof ApiKeyError && /act_as/.test(e.message));
    assert.throws(
      () => CertPrincipals.parse(JSON.stringify([{ cn: "kiosk", tenant: "acme", scopes: ["act_as"], user: "carol" }])),
      (e: unknown) => e instanceof CertPrincipalsError && /act_as/.test(e.message),
    );
  });
});

describe("JWT_USER_CLAIM", () => {
  const verifier = (userClaim?: string): JwtVerifier =>
    new JwtVerifier({
      hs256Secret: HS_SECRET,
      jwksFile: undefined,
      issuer: ISSUER,
      audience: AUDIENCE,
      tenantClaim: "tenant",
      scopesClaim: "scope",
      clockToleranceMs: 0,
      ...(userClaim === undefined ? {} : { userClaim }),
    });

  test("a token carrying the claim is bound to that user and cannot delegate; without the setting nobody is bound", async () => {
    const token = await hs256({ sub: "alice", tenant: "acme", scope: "read act_as" });
    const bound = await verifier("sub").verify(token);
    assert.equal(bound?.user, "alice");
    assert.equal(bound?.id, "jwt:alice");
    assert.equal(bound?.scopes.has("act_as"), false, "a user's token cannot speak for other users");
    const unbound = await verifier().verify(token);
    assert.equal(unbound?.user, undefined);
    assert.equal(unbound?.scopes.has("act_as"), true);
  });

  test("a token without the claim acts for every user; a claim that is not a user id refuses the token", async () => {
    assert.equal((await verifier("uid").verify(await hs256({ sub: "svc", tenant: "acme", scope: "read" })))?.user, undefined);
    assert.equal((await verifier("uid").verify(await hs256({ sub: "svc", tenant: "acme", scope: "read" })))?.id, "jwt:svc");
    // "tenant" holds a valid name here, so it binds; "iat" is a number, which is no user id.
    assert.equal((await verifier("tenant").verify(await hs256({ sub: "svc", tenant: "acme" })))?.user, "acme");
    assert.equal(await verifier("iat").verify(await hs256({ sub: "svc", tenant: "acme" })), undefined);
    // Inherited properties are not claims.
    assert.equal((await verifier("constructor").verify(await hs256({ sub: "svc", tenant: "acme" })))?.user, undefined);
  });

  test("configuration: needs JWTs and a plain claim name", () => {
    const jwtEnv = { JWT_HS256_SECRET: HS_SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE };
    assert.equal(loadConfig({ ...jwtEnv, JWT_USER_CLAIM: "sub" }).auth.jwt?.userClaim, "sub");
    assert.equal(loadConfig(jwtEnv).auth.jwt?.userClaim, undefined);
    assert.throws(() => loadConfig({ JWT_USER_CLAIM: "sub" }), (e: unknown) => e instanceof ConfigError && /^JWT_USER_CLAIM needs JWTs/.test(e.message));
    assert.throws(() => loadConfig({ ...jwtEnv, JWT_USER_CLAIM: "a b" }), (e: unknown) => e instanceof ConfigError && /^JWT_USER_CLAIM=/.test(e.message));
  });
});

describe("delegation (sessiond-act-as)", () => {
  const service: Principal = { id: "key:bff", tenant: "acme", scopes: new Set(["read", "act_as"]) };
  const admin: Principal = { id: "key:ops", tenant: "acme", scopes: new Set(["admin"]) };
  const user: Principal = { id: "jwt:alice", tenant: "acme", scopes: new Set(["read"]), user: "alice" };

  test("no header: the principal as it is", () => {
    assert.deepEqual(applyDelegation(service, null), { ok: true, principal: service });
    assert.deepEqual(applyDelegation(user, null), { ok: true, principal: user });
  });

  test("with act_as: the principal acting for the named user, marked delegated", () => {
    const result = applyDelegation(service, "bob");
    assert.ok(result.ok);
    assert.equal(result.principal.user, "bob");
    assert.equal(result.principal.delegated, true);
    assert.equal(result.principal.id, "key:bff");
  });

  test("admin does not imply act_as; a user-bound principal cannot delegate; a bad user id is INVALID_ARGUMENT", () => {
    assert.equal(hasScope(admin, "read"), true);
    assert.equal(hasScope(admin, "act_as"), false);
    assert.deepEqual(applyDelegation(admin, "bob").ok, false);
    const refused = applyDelegation(user, "alice");
    assert.ok(!refused.ok);
    assert.equal(refused.outcome, "permission_denied");
    const bad = applyDelegation(service, "");
    assert.ok(!bad.ok);
    assert.equal(bad.outcome, "invalid_argument");
  });
});

describe("access policy", () => {
  test("listing and watch filters keep a user-bound caller to its user", () => {
    assert.deepEqual(ownFilter({ dataSource: "web" }, undefined), { dataSource: "web" });
    assert.deepEqual(ownFilter({ dataSource: "web" }, "alice"), { dataSource: "web", userId: "alice" });
    assert.deepEqual(ownFilter({ userId: "alice" }, "alice"), { userId: "alice" });
    assert.equal(ownFilter({ userId: "bob" }, "alice"), "none");
  });

  test("an update needs admin for the access level or data source, write for metadata", () => {
    assert.equal(updateLevel({ metadata: {} }), "write");
    assert.equal(updateLevel({ metadata: {}, accessLevel: "read" }), "admin");
    assert.equal(updateLevel({ dataSource: "web" }), "admin");
  });
});
