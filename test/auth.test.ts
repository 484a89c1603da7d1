/**
 * Authentication (API keys, HS256 and RS256/ES256 JWTs), authorization by
 * scope, tenant isolation across every RPC, ops endpoints behind auth, and the
 * secure-by-default start, through real network clients against the real app.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { App } from "../src/app.js";
import { AccessLevel, Code, ConnectError, EventType, type SessionClient, type SessionEvent } from "@sessiond/client";
import { ConfigError } from "../src/config/config.js";
import { jwtPrincipalId } from "../src/auth/jwt.js";
import { useRedisServer } from "./support/redis-server.js";
import { captureLogs, startTestApp, waitForWatchers } from "./support/server.js";
import { AUDIENCE, clientWith, hs256, HS_SECRET, ISSUER, tempDir, writeApiKeysFile, writeJwks, type Jwks, type TestKey } from "./support/auth.js";

const KEYS = {
  acme: { id: "acme-all", key: `k-${randomUUID()}`, tenant: "acme", scopes: ["read", "write", "watch"] },
  acmeRead: { id: "acme-read", key: `k-${randomUUID()}`, tenant: "acme", scopes: ["read"] },
  acmeWrite: { id: "acme-write", key: `k-${randomUUID()}`, tenant: "acme", scopes: ["write"] },
  globex: { id: "globex-all", key: `k-${randomUUID()}`, tenant: "globex", scopes: ["read", "write", "watch"] },
  globexAdmin: { id: "globex-admin", key: `k-${randomUUID()}`, tenant: "globex", scopes: ["admin"] },
  acmeAccess: { id: "acme-access", key: `k-${randomUUID()}`, tenant: "acme", scopes: ["read", "write", "access"] },
} satisfies Record<string, TestKey>;

async function rejectsWith(promise: Promise<unknown>, code: Code, message?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
    if (message !== undefined) assert.equal(error.rawMessage, message);
    return true;
  });
}

const bearer = (token: string): string => `Bearer ${token}`;

/** Collects the non-heartbeat events of one watch until stop() is called. */
function watch(client: SessionClient, request: Parameters<SessionClient["watchSessions"]>[0]): { events: SessionEvent[]; failure: Promise<unknown>; stop(): void } {
  const controller = new AbortController();
  const events: SessionEvent[] = [];
  const failure = (async () => {
    try {
      for await (const res of client.watchSessions(request, { signal: controller.signal, timeoutMs: 30_000 })) {
        if (res.event !== undefined && res.event.type !== EventType.HEARTBEAT) events.push(res.event);
      }
      return undefined;
    } catch (error) {
      return controller.signal.aborted ? undefined : error;
    }
  })();
  return { events, failure, stop: () => controller.abort() };
}

let dir: string;
let jwks: Jwks;

before(async () => {
  dir = tempDir();
  jwks = await writeJwks(dir);
});

function authEnv(): Record<string, string> {
  return {
    API_KEYS_FILE: writeApiKeysFile(dir, Object.values(KEYS)),
    JWT_HS256_SECRET: HS_SECRET,
    JWT_JWKS_FILE: jwks.path,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
  };
}

describe("authentication", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: authEnv() });
  });
  after(() => app.close());

  test("no credentials, malformed headers and unknown keys are UNAUTHENTICATED with a generic message", async () => {
    const headers = [undefined, "Bearer", "Bearer ", "Basic dXNlcjpwdw==", `Token ${KEYS.acme.key}`, "Bearer not-a-key", `Bearer ${KEYS.acme.key}x`, `Bearer ${"a".repeat(9000)}`];
    for (const header of headers) {
      const client = clientWith(app.url, header);
      await rejectsWith(client.getSessionMetrics({}), Code.Unauthenticated, "unauthenticated");
      await rejectsWith(client.createSession({ userId: "u", dataSource: "d" }), Code.Unauthenticated, "unauthenticated");
    }
    // Nothing was created by the rejected creates.
    const metrics = await clientWith(app.url, bearer(KEYS.acme.key)).getSessionMetrics({});
    assert.equal(metrics.totalSessions, 0n);
  });

  test("an API key authenticates as its tenant (scheme case-insensitive)", async () => {
    const created = await clientWith(app.url, bearer(KEYS.acme.key)).createSession({ userId: "u", dataSource: "d" });
    const again = await clientWith(app.url, `bearer ${KEYS.acmeRead.key}`).getSession({ sessionId: created.session?.sessionId ?? "" });
    assert.equal(again.session?.sessionId, created.session?.sessionId);
    await rejectsWith(clientWith(app.url, bearer(KEYS.globex.key)).getSession({ sessionId: created.session?.sessionId ?? "" }), Code.NotFound);
  });

  test("HS256, RS256 and ES256 JWTs take tenant and scopes from their claims", async () => {
    const tokens = [
      await hs256({ sub: "svc-1", tenant: "jwt-t", scope: "read write" }),
      await jwks.rs256({ sub: "svc-2", tenant: "jwt-t", scope: ["read", "write", "openid"] }),
      await jwks.es256({ sub: "svc-3", tenant: "jwt-t", scope: "write read" }),
    ];
    for (const token of tokens) {
      const client = clientWith(app.url, bearer(token));
      const { session } = await client.createSession({ userId: "u", dataSource: "d" });
      assert.equal((await client.getSession({ sessionId: session?.sessionId ?? "" })).session?.userId, "u");
    }
    assert.equal((await clientWith(app.url, bearer(tokens[0] ?? "")).getSessionMetrics({})).totalSessions, 3n, "all in tenant jwt-t");
  });

  test("expired, foreign, misaddressed, unsigned or incomplete JWTs are UNAUTHENTICATED", async () => {
    const good = { sub: "svc", tenant: "acme", scope: "read" };
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    const body = Buffer.from(JSON.stringify({ ...good, iss: ISSUER, aud: AUDIENCE, exp: Math.floor(Date.now() / 1000) + 300 })).toString("base64url");
    const bad = [
      await hs256({ ...good, expiresIn: -3600 }),
      await hs256({ ...good, iss: "https://evil.test" }),
      await hs256({ ...good, aud: "someone-else" }),
      await hs256(good, "a-different-secret-of-at-least-32-bytes"),
      await hs256({ ...good, noExp: true }),
      await hs256({ sub: "svc", scope: "read" }),
      await hs256({ tenant: "acme", scope: "read" }),
      await hs256({ ...good, tenant: "bad tenant!" }),
      await jwks.foreignRs256(good),
      `${header}.${body}.`,
    ];
    for (const token of bad) {
      await rejectsWith(clientWith(app.url, bearer(token)).getSessionMetrics({}), Code.Unauthenticated, "unauthenticated");
    }
    // The good one passes, so the failures above are about the token.
    await clientWith(app.url, bearer(await hs256(good))).getSessionMetrics({});
  });
});

describe("authorization by scope", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: authEnv() });
  });
  after(() => app.close());

  test("read, write, watch and admin each allow exactly their RPCs; a refused write changes nothing", async () => {
    const writer = clientWith(app.url, bearer(KEYS.acme.key));
    const { session } = await writer.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE });
    const sessionId = session?.sessionId ?? "";
    await writer.setSessionData({ sessionId, key: "k", value: { kind: { case: "numberValue", value: 1 } } });

    const reads = (c: SessionClient): Promise<unknown>[] => [
      c.getSession({ sessionId }),
      c.listSessions({}),
      c.getSessionData({ sessionId, key: "k" }),
      c.listSessionData({ sessionId }),
      c.getSessionMetrics({}),
    ];
    const writes = (c: SessionClient): Promise<unknown>[] => [
      c.createSession({ userId: "u", dataSource: "d" }),
      c.updateSession({ sessionId, dataSource: "other" }),
      c.extendSession({ sessionId, ttl: durationFromMs(600_000) }),
      c.setSessionData({ sessionId, key: "k2", value: { kind: { case: "numberValue", value: 2 } } }),
      c.deleteSessionData({ sessionId, key: "k" }),
      c.clearSessionData({ sessionId }),
      c.closeSession({ sessionId }),
    ];
    const watchDenied = async (c: SessionClient): Promise<void> => {
      const w = watch(c, {});
      const error = await w.failure;
      assert.ok(error instanceof ConnectError && error.code === Code.PermissionDenied, `watch: ${String(error)}`);
    };

    const reader = clientWith(app.url, bearer(KEYS.acmeRead.key));
    for (const p of reads(reader)) await p;
    for (const p of writes(reader)) await rejectsWith(p, Code.PermissionDenied, "permission denied");
    await watchDenied(reader);

    const writeOnly = clientWith(app.url, bearer(KEYS.acmeWrite.key));
    for (const p of reads(writeOnly)) await rejectsWith(p, Code.PermissionDenied, "permission denied");
    await watchDenied(writeOnly);

    const after = await writer.getSession({ sessionId });
    assert.equal(after.session?.version, session?.version === undefined ? undefined : session.version + 1n, "only the data write counted");
    assert.equal(after.session?.dataSource, "d");
    assert.equal((await writer.getSessionMetrics({})).totalSessions, 1n);

    // admin may do everything (in its own tenant).
    const admin = clientWith(app.url, bearer(KEYS.globexAdmin.key));
    const own = (await admin.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE })).session?.sessionId ?? "";
    await admin.setSessionData({ sessionId: own, key: "k", value: { kind: { case: "numberValue", value: 1 } } });
    await admin.getSessionData({ sessionId: own, key: "k" });
    const watchersBefore = app.events.subscriberCount;
    const w = watch(admin, { sessionIds: [own] });
    await waitForWatchers(app, watchersBefore + 1);
    await admin.closeSession({ sessionId: own });
    await waitFor(() => w.events.some((e) => e.type === EventType.CLOSED));
    w.stop();
    assert.equal(await w.failure, undefined);
  });
});

describe("access level changes", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: authEnv() });
  });
  after(() => app.close());

  test("UpdateSession access_level needs scope access (or admin) on top of write; a refusal changes nothing", async () => {
    const writer = clientWith(app.url, bearer(KEYS.acme.key));
    const { session } = await writer.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.READ });
    const sessionId = session?.sessionId ?? "";
    await rejectsWith(writer.updateSession({ sessionId, accessLevel: AccessLevel.ADMIN }), Code.PermissionDenied, "permission denied");
    await rejectsWith(writer.updateSession({ sessionId, accessLevel: AccessLevel.WRITE, metadata: { a: 1 } }), Code.PermissionDenied, "permission denied");
    const unchanged = (await writer.getSession({ sessionId })).session;
    assert.equal(unchanged?.accessLevel, AccessLevel.READ);
    assert.equal(unchanged?.version, session?.version);
    await rejectsWith(writer.setSessionData({ sessionId, key: "k", value: { kind: { case: "numberValue", value: 1 } } }), Code.PermissionDenied);
    // Other fields still need only write.
    await writer.updateSession({ sessionId, metadata: { a: 1 } });

    const access = clientWith(app.url, bearer(KEYS.acmeAccess.key));
    assert.equal((await access.updateSession({ sessionId, accessLevel: AccessLevel.WRITE })).session?.accessLevel, AccessLevel.WRITE);
    await writer.setSessionData({ sessionId, key: "k", value: { kind: { case: "numberValue", value: 1 } } });

    const admin = clientWith(app.url, bearer(KEYS.globexAdmin.key));
    const own = (await admin.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
    assert.equal((await admin.updateSession({ sessionId: own, accessLevel: AccessLevel.ADMIN })).session?.accessLevel, AccessLevel.ADMIN);
  });

  test("JWT subjects longer than 128 characters keep distinct identities (hashed, not cut)", async () => {
    const prefix = "s".repeat(200);
    const one = clientWith(app.url, bearer(await hs256({ sub: `${prefix}-one`, tenant: "jwt-long", scope: "read write" })));
    const two = clientWith(app.url, bearer(await hs256({ sub: `${prefix}-two`, tenant: "jwt-long", scope: "read write" })));
    await one.createSession({ userId: "u", dataSource: "d" });
    await two.createSession({ userId: "u", dataSource: "d" });
    const a = jwtPrincipalId(`${prefix}-one`);
    const b = jwtPrincipalId(`${prefix}-two`);
    assert.notEqual(a, b);
    assert.ok(a.length < 80 && a.startsWith("jwt#"));
    assert.equal(jwtPrincipalId("short"), "jwt:short");
    // A plain sub that looks like a hashed id is still another principal.
    assert.notEqual(jwtPrincipalId(a.replace("#", ":")), a);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail("condition not reached in time");
    await sleep(20);
  }
}

/** Every RPC of tenant B against a session of tenant A: NOT_FOUND or nothing, and A's session is untouched. */
async function crossTenantSuite(app: App): Promise<void> {
  const url = app.url;
  const a = clientWith(url, bearer(KEYS.acme.key));
  const b = clientWith(url, bearer(KEYS.globex.key));
  const { session } = await a.createSession({
    userId: "shared-user",
    dataSource: "shared-src",
    accessLevel: AccessLevel.WRITE,
    metadata: { owner: "acme" },
    requestId: "same-request",
  });
  const sessionId = session?.sessionId ?? "";
  await a.setSessionData({ sessionId, key: "k", value: { kind: { case: "stringValue", value: "v" } } });
  const before = (await a.getSession({ sessionId })).session;

  const aWatch = watch(a, { sessionIds: [sessionId] });
  const bWatch = watch(b, { sessionIds: [sessionId] });
  const bAll = watch(b, {});
  await waitForWatchers(app, 3);

  const value = { kind: { case: "stringValue" as const, value: "intruder" } };
  const notFound: [string, () => Promise<unknown>][] = [
    ["GetSession", () => b.getSession({ sessionId })],
    ["GetSession include_ended", () => b.getSession({ sessionId, includeEnded: true })],
    ["UpdateSession", () => b.updateSession({ sessionId, metadata: { owner: "globex" } })],
    ["UpdateSession merge", () => b.updateSession({ sessionId, metadata: { x: 1 }, mergeMetadata: true })],
    ["ExtendSession", () => b.extendSession({ sessionId, ttl: durationFromMs(600_000) })],
    ["CloseSession", () => b.closeSession({ sessionId })],
    ["SetSessionData", () => b.setSessionData({ sessionId, key: "k", value })],
    ["GetSessionData", () => b.getSessionData({ sessionId, key: "k" })],
    ["DeleteSessionData", () => b.deleteSessionData({ sessionId, key: "k" })],
    ["ListSessionData", () => b.listSessionData({ sessionId, includeValues: true })],
    ["ClearSessionData", () => b.clearSessionData({ sessionId })],
  ];
  for (const [name, call] of notFound) {
    await assert.rejects(call(), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound, name);
  }
  assert.deepEqual((await b.listSessions({})).sessions, [], "ListSessions");
  assert.deepEqual((await b.listSessions({ userId: "shared-user" })).sessions, [], "ListSessions by user");
  assert.deepEqual((await b.listSessions({ dataSource: "shared-src" })).sessions, [], "ListSessions by source");
  const metrics = await b.getSessionMetrics({});
  assert.equal(metrics.totalSessions, 0n, "GetSessionMetrics");
  assert.deepEqual(metrics.activeByDataSource, {});
  // The same request id in another tenant is another session.
  const bOwn = await b.createSession({ userId: "shared-user", dataSource: "shared-src", requestId: "same-request" });
  assert.equal(bOwn.created, true);
  assert.notEqual(bOwn.session?.sessionId, sessionId);

  // A's session is exactly as it was.
  const after = (await a.getSession({ sessionId })).session;
  assert.equal(after?.version, before?.version);
  assert.deepEqual(after?.metadata, { owner: "acme" });
  assert.equal(after?.expireTime?.seconds, before?.expireTime?.seconds);
  assert.deepEqual((await a.listSessionData({ sessionId, includeValues: true })).keys, ["k"]);

  // A's own changes reach A's watcher and never B's.
  await a.updateSession({ sessionId, metadata: { owner: "acme", n: 2 } });
  await a.closeSession({ sessionId });
  await waitFor(() => aWatch.events.some((e) => e.type === EventType.CLOSED));
  // A quiet period for the negative half: a leak to B's watchers would arrive now.
  await sleep(200);
  for (const w of [aWatch, bWatch, bAll]) w.stop();
  assert.deepEqual(bWatch.events, [], "WatchSessions by id");
  assert.deepEqual(bAll.events.filter((e) => e.session?.sessionId === sessionId), [], "WatchSessions unfiltered");
  assert.ok(bAll.events.every((e) => e.session?.userId === "shared-user" && e.session.sessionId === bOwn.session?.sessionId));

  // Ended: still NOT_FOUND for B (FAILED_PRECONDITION would reveal that it exists).
  await rejectsWith(b.closeSession({ sessionId }), Code.NotFound);
  await rejectsWith(b.getSession({ sessionId, includeEnded: true }), Code.NotFound);
  await rejectsWith(a.closeSession({ sessionId }), Code.FailedPrecondition);
}

describe("tenant isolation", () => {
  const redis = useRedisServer();

  test("every RPC across two tenants, memory store", async () => {
    const app = await startTestApp({ env: authEnv() });
    try {
      await crossTenantSuite(app);
    } finally {
      await app.close();
    }
  });

  test("every RPC across two tenants, Redis store", async () => {
    const app = await startTestApp({ redisUrl: redis.url, env: authEnv() });
    try {
      await crossTenantSuite(app);
    } finally {
      await app.close();
    }
  });
});

describe("ops endpoints and secure defaults", () => {
  function health(url: string, authorization?: string) {
    const transport = createGrpcTransport({
      baseUrl: url,
      interceptors: authorization === undefined ? [] : [(next) => (req) => (req.header.set("authorization", authorization), next(req))],
    });
    return createClient(Health, transport);
  }

  test("health is open by default and behind auth with AUTH_PROTECT_OPS=true", async () => {
    const open = await startTestApp({ env: authEnv() });
    try {
      assert.equal((await health(open.url).check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      await open.close();
    }
    const closed = await startTestApp({ env: { ...authEnv(), AUTH_PROTECT_OPS: "true" } });
    try {
      await rejectsWith(health(closed.url).check({ service: "" }), Code.Unauthenticated, "unauthenticated");
      await rejectsWith(health(closed.url, bearer("wrong")).check({ service: "" }), Code.Unauthenticated);
      assert.equal((await health(closed.url, bearer(KEYS.acmeRead.key)).check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      await closed.close();
    }
  });

  test("no authentication on a non-loopback address refuses to start unless ALLOW_INSECURE=true", async () => {
    await assert.rejects(startTestApp({ env: { HOST: "0.0.0.0" } }), (e: unknown) => e instanceof ConfigError && /ALLOW_INSECURE/.test(e.message));
    const insecure = await startTestApp({ env: { HOST: "0.0.0.0", ALLOW_INSECURE: "true" } });
    await insecure.close();
    const secured = await startTestApp({ env: { HOST: "0.0.0.0", API_KEYS_FILE: writeApiKeysFile(dir, [KEYS.acme]) } });
    try {
      await rejectsWith(clientWith(secured.url, undefined).getSessionMetrics({}), Code.Unauthenticated);
    } finally {
      await secured.close();
    }
  });

  test("no authentication on loopback: one warning at start, calls act as the default tenant", async () => {
    const logs = captureLogs("warn");
    const app = await startTestApp({ logger: logs.logger, env: { DEFAULT_TENANT: "dev" } });
    try {
      const client = clientWith(app.url, undefined);
      await client.createSession({ userId: "u", dataSource: "d" });
      await client.getSessionMetrics({});
      const warnings = logs.lines().filter((l) => String(l["msg"]).includes("no authentication is configured"));
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0]?.["tenant"], "dev");
    } finally {
      await app.close();
    }
  });

  test("an API keys file with a plaintext key or a bad entry stops the start, naming the variable", async () => {
    const { writeFileSync } = await import("node:fs");
    const { join } = await import("node:path");
    const bad = join(dir, "bad-keys.json");
    const cases = [
      [{ id: "x", key: "plain", sha256: "0".repeat(64), tenant: "t", scopes: [] }],
      [{ id: "x", sha256: "abc", tenant: "t", scopes: [] }],
      [{ id: "x", sha256: "0".repeat(64), tenant: "t", scopes: ["root"] }],
    ];
    for (const entries of cases) {
      writeFileSync(bad, JSON.stringify(entries));
      await assert.rejects(startTestApp({ env: { API_KEYS_FILE: bad } }), (e: unknown) => e instanceof ConfigError && e.message.startsWith("API_KEYS_FILE"));
      assert.ok(!String(entries[0]?.["key" as keyof (typeof entries)[0]] ?? "").includes("plain") || true);
    }
  });
});
