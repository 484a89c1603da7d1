/**
 * Sessions belong to their user, for callers that act for a user (issue 17):
 * every RPC, listing and watch across {the owner, another user of the same
 * tenant, a user of another tenant, a service principal, a delegating service
 * principal (acting for the owner, and for the other user)}, over Connect JSON
 * on HTTP/1.1 (fetch) and gRPC (@grpc/grpc-js), on both stores, with the
 * status code and the audit record of each call. Also: access levels for
 * user-bound callers, NOT_FOUND for another user's session identical to a
 * missing one, and the act-as header refused without its scope.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { App } from "../src/app.js";
import { compareEventIds } from "../src/store/event-id.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp, waitForWatchers } from "./support/server.js";
import { hs256, tempDir, writeApiKeysFile } from "./support/auth.js";
import { ACME, assertAudit, auditCapture, authEnv, GLOBEX, KEYS, KIOSK, makeCallers, type Caller, type Callers, type Rec } from "./support/ownership-callers.js";
import { ACT_AS, connectJsonClient, grpcJsClient, type Credentials, type Json, type WireClient, type WireReply } from "./support/wire-clients.js";

/** The RPCs on one session, in an order that leaves CloseSession last. */
function sessionCalls(id: string): { method: string; operation: string; request: Json }[] {
  return [
    { method: "GetSession", operation: "get", request: { sessionId: id } },
    { method: "UpdateSession", operation: "update", request: { sessionId: id, metadata: { team: "red" }, mergeMetadata: true } },
    { method: "UpdateSession", operation: "update", request: { sessionId: id, accessLevel: "ACCESS_LEVEL_ADMIN" } },
    { method: "ExtendSession", operation: "extend", request: { sessionId: id, ttl: "900s" } },
    { method: "SetSessionData", operation: "data_set", request: { sessionId: id, key: "k2", value: "v2" } },
    { method: "GetSessionData", operation: "data_get", request: { sessionId: id, key: "k" } },
    { method: "ListSessionData", operation: "data_list", request: { sessionId: id, includeValues: true } },
    { method: "DeleteSessionData", operation: "data_delete", request: { sessionId: id, key: "k2" } },
    { method: "ClearSessionData", operation: "data_clear", request: { sessionId: id } },
    { method: "CloseSession", operation: "close", request: { sessionId: id } },
  ];
}

const redis = useRedisServer();

for (const storeKind of ["memory", "redis"] as const) {
  describe(`ownership on the ${storeKind} store`, () => {
    let app: App;
    let audit: ReturnType<typeof auditCapture>;
    let callers: Callers;
    let wires: WireClient[];

    before(async () => {
      audit = auditCapture();
      callers = await makeCallers();
      app = await startTestApp({
        ...(storeKind === "redis" ? { redisUrl: redis.url } : {}),
        env: authEnv(tempDir()),
        auditDestination: audit.destination,
      });
      wires = [connectJsonClient(app.url), grpcJsClient(`127.0.0.1:${app.port}`)];
    });
    after(async () => {
      for (const wire of wires) wire.close();
      await app.close();
    });

    /** A new session of `user` created by the service principal (admin level, one data key). */
    async function seed(wire: WireClient, user: string, tenantCaller?: Caller): Promise<string> {
      const as = tenantCaller?.credentials ?? callers.service.credentials;
      const created = await wire.unary("CreateSession", { userId: user, dataSource: "web", accessLevel: "ACCESS_LEVEL_ADMIN", ttl: "600s" }, as);
      assert.equal(created.code, "ok", `seed: ${created.message}`);
      const id = String((created.body["session"] as Json)["sessionId"]);
      assert.equal((await wire.unary("SetSessionData", { sessionId: id, key: "k", value: "v" }, as)).code, "ok");
      return id;
    }

    /** The session as stored, read without recording an access (a listing does not touch). */
    async function stored(wire: WireClient, id: string): Promise<Json | undefined> {
      const listed = await wire.unary("ListSessions", { userId: "alice", pageSize: 1000 }, callers.service.credentials);
      return ((listed.body["sessions"] ?? []) as Json[]).find((s) => s["sessionId"] === id);
    }

    async function call(wire: WireClient, method: string, request: Json, caller: Caller): Promise<WireReply> {
      return wire.unary(method, request, caller.credentials);
    }

    test("every session RPC: the owner (directly or through delegation) and the service succeed; anyone else gets NOT_FOUND, identical to a missing session, and changes nothing", async () => {
      for (const w of wires) {
        for (const caller of Object.values(callers)) {
          const why = `${w.name}, ${caller.name}`;
          const id = await seed(w, "alice");
          const before = await stored(w, id);
          const reaches = caller.tenant === ACME && (caller.user === undefined || caller.user === "alice");
          const missing = randomUUID();
          for (const { method, operation, request } of sessionCalls(id)) {
            const reply = await call(w, method, request, caller);
            assert.equal(reply.code, reaches ? "ok" : "not_found", `${why}: ${method} ${JSON.stringify(request)}: ${reply.message}`);
            assertAudit(audit.last(), { ...caller.audit, operation, outcome: reply.code, sessionId: id, method: `session.v1.SessionService/${method}` }, `${why}: ${method}`);
            if (!reaches) {
              // The same call on a session that does not exist answers exactly the same.
              const onMissing = await call(w, method, { ...request, sessionId: missing }, caller);
              assert.deepEqual([onMissing.code, onMissing.message], [reply.code, reply.message], `${why}: ${method} is indistinguishable from a missing session`);
            }
          }
          if (reaches) {
            const afterwards = await call(w, "GetSession", { sessionId: id, includeEnded: true }, callers.service);
            assert.equal((afterwards.body["session"] as Json)["status"], "SESSION_STATUS_CLOSED", `${why}: closed`);
            const ended = await call(w, "GetSession", { sessionId: id, includeEnded: true }, caller);
            assert.equal(ended.code, "ok", `${why}: the owner reads its ended session`);
          } else {
            assert.deepEqual(await stored(w, id), before, `${why}: the session is unchanged (version, access time, expiry, metadata)`);
            const ended = await call(w, "GetSession", { sessionId: id, includeEnded: true }, caller);
            assert.equal(ended.code, "not_found");
          }
        }
      }
    });

    test("CreateSession: a caller acting for a user creates for that user only; GetSessionMetrics is the service's only", async () => {
      for (const w of wires) {
        for (const caller of Object.values(callers)) {
          const why = `${w.name}, ${caller.name}`;
          const forAlice = await call(w, "CreateSession", { userId: "alice", dataSource: "web", accessLevel: "ACCESS_LEVEL_READ" }, caller);
          const mayCreateForAlice = caller.user === undefined || caller.user === "alice";
          assert.equal(forAlice.code, mayCreateForAlice ? "ok" : "permission_denied", `${why}: create for alice: ${forAlice.message}`);
          assertAudit(audit.last(), { ...caller.audit, operation: "create", outcome: forAlice.code }, `${why}: create`);
          if (forAlice.code === "ok") assert.equal((forAlice.body["session"] as Json)["userId"], "alice");
          else assert.match(forAlice.message, /user_id/);

          const metrics = await call(w, "GetSessionMetrics", {}, caller);
          assert.equal(metrics.code, caller.user === undefined ? "ok" : "permission_denied", `${why}: metrics`);
          assertAudit(audit.last(), { ...caller.audit, operation: "metrics", outcome: metrics.code }, `${why}: metrics`);
        }
      }
    });

    test("ListSessions: a caller acting for a user lists its own sessions, whatever the filter says", async () => {
      for (const w of wires) {
        const alices = [await seed(w, "alice"), await seed(w, "alice")];
        const bobs = [await seed(w, "bob")];
        const globex = [await seed(w, "alice", callers.otherTenant)];
        for (const caller of Object.values(callers)) {
          const why = `${w.name}, ${caller.name}`;
          for (const filter of [{}, { userId: "alice" }, { userId: "bob" }, { dataSource: "web" }]) {
            const reply = await call(w, "ListSessions", { ...filter, pageSize: 1000 }, caller);
            assert.equal(reply.code, "ok", `${why}: ${reply.message}`);
            assertAudit(audit.last(), { ...caller.audit, operation: "list", outcome: "ok" }, `${why}: list`);
            const listed = ((reply.body["sessions"] ?? []) as Json[]).map((s) => ({ id: String(s["sessionId"]), user: String(s["userId"]) }));
            const ids = new Set(listed.map((s) => s.id));
            const users = new Set(listed.map((s) => s.user));
            const requested = (filter as { userId?: string }).userId;
            if (caller.user !== undefined) {
              assert.ok([...users].every((u) => u === caller.user), `${why} ${JSON.stringify(filter)}: only its own user's sessions (${[...users].join(",")})`);
              if (requested !== undefined && requested !== caller.user) assert.equal(listed.length, 0, `${why}: another user's filter lists nothing`);
            }
            const expectIn = (wanted: string[], present: boolean): void => {
              for (const id of wanted) assert.equal(ids.has(id), present, `${why} ${JSON.stringify(filter)}: ${id} ${present ? "listed" : "not listed"}`);
            };
            const sees = (user: string, tenant: string): boolean =>
              caller.tenant === tenant && (caller.user === undefined || caller.user === user) && (requested === undefined || requested === user);
            expectIn(alices, sees("alice", ACME));
            expectIn(bobs, sees("bob", ACME));
            expectIn(globex, sees("alice", GLOBEX));
          }
        }
      }
    });

    test("WatchSessions: events of its own user's sessions only, whatever the filter says", async () => {
      for (const w of wires) {
        await waitForWatchers(app, 0);
        // Every watcher stops once its stream has passed its tenant's last write (a heartbeat or event at or after it):
        // a tenant's cursors never show another tenant's position.
        const last = new Map<string, string>();
        const passed = (tenant: string, cursor: string): boolean => {
          const end = last.get(tenant) ?? "";
          return end !== "" && cursor !== "" && compareEventIds(cursor, end) >= 0;
        };
        const watchers = Object.values(callers).flatMap((caller) =>
          [{}, { userId: "bob" }].map((filter) => ({ caller, filter, outcome: w.watch(filter, caller.credentials, (m) => passed(caller.tenant, m.cursor)) })),
        );
        await waitForWatchers(app, watchers.length);
        const a1 = await seed(w, "alice");
        const b1 = await seed(w, "bob");
        const g1 = await seed(w, "alice", callers.otherTenant);
        assert.equal((await w.unary("CloseSession", { sessionId: a1 }, callers.owner.credentials)).code, "ok");
        for (const tenant of new Set(Object.values(callers).map((c) => c.tenant))) last.set(tenant, await app.manager.lastEventId(tenant));

        for (const { caller, filter, outcome } of watchers) {
          const why = `${w.name}, ${caller.name}, filter ${JSON.stringify(filter)}`;
          const { events, code } = await outcome;
          assert.equal(code, "ok", `${why}: the watch ran until stopped`);
          const seen = new Set(events.map((e) => e.sessionId));
          const requested = (filter as { userId?: string }).userId;
          const sees = (user: string, tenant: string): boolean =>
            caller.tenant === tenant && (caller.user === undefined || caller.user === user) && (requested === undefined || requested === user);
          assert.equal(seen.has(a1), sees("alice", ACME), `${why}: alice's session`);
          assert.equal(seen.has(b1), sees("bob", ACME), `${why}: bob's session`);
          assert.equal(seen.has(g1), sees("alice", GLOBEX), `${why}: globex's session`);
          if (caller.user !== undefined) assert.ok(events.every((e) => e.userId === caller.user), `${why}: only its user's events`);
          if (seen.has(a1)) {
            assert.deepEqual(
              events.filter((e) => e.sessionId === a1).map((e) => e.type),
              ["EVENT_TYPE_CREATED", "EVENT_TYPE_DATA_CHANGED", "EVENT_TYPE_CLOSED"],
              `${why}: every event of alice's session`,
            );
          }
        }
        for (const caller of Object.values(callers)) {
          const starts = audit
            .records()
            .filter((r) => r["operation"] === "watch_start" && r["principal"] === caller.audit["principal"] && r["tenant"] === caller.tenant && r["user"] === caller.audit["user"]);
          assert.ok(starts.length >= 2, `${w.name}, ${caller.name}: watch_start records`);
          for (const r of starts) assertAudit(r, { ...caller.audit, outcome: "ok" }, `${w.name}, ${caller.name}: watch_start`);
        }
      }
    });
  });
}

describe("access levels for callers acting for a user, and the act-as header", () => {
  let app: App;
  let audit: ReturnType<typeof auditCapture>;
  let callers: Callers;
  let wires: WireClient[];
  const kiosk: Credentials = { authorization: `Bearer ${KIOSK.key}` };

  before(async () => {
    audit = auditCapture();
    callers = await makeCallers();
    const dir = tempDir();
    const env = authEnv(dir);
    const keysFile = writeApiKeysFile(dir, Object.values(KEYS));
    // The kiosk key names a user in its entry.
    const { readFileSync, writeFileSync } = await import("node:fs");
    const entries = JSON.parse(readFileSync(keysFile, "utf8")) as Rec[];
    const { apiKeyHash } = await import("../src/auth/api-keys.js");
    entries.push({ id: KIOSK.id, sha256: apiKeyHash(KIOSK.key), tenant: KIOSK.tenant, scopes: KIOSK.scopes, user: KIOSK.user });
    writeFileSync(keysFile, JSON.stringify(entries));
    app = await startTestApp({ env: { ...env, API_KEYS_FILE: keysFile, AUTH_PROTECT_OPS: "true" }, auditDestination: audit.destination });
    wires = [connectJsonClient(app.url), grpcJsClient(`127.0.0.1:${app.port}`)];
  });
  after(async () => {
    for (const wire of wires) wire.close();
    await app.close();
  });

  async function seed(w: WireClient, level: string, user = "alice"): Promise<string> {
    const created = await w.unary("CreateSession", { userId: user, dataSource: "web", accessLevel: level, ttl: "600s" }, callers.service.credentials);
    assert.equal(created.code, "ok");
    return String((created.body["session"] as Json)["sessionId"]);
  }

  test("READ reads; WRITE also writes data and metadata; ADMIN also changes access level and data source; close and extend at every level", async () => {
    for (const w of wires) {
      for (const caller of [callers.owner, callers.delegatingForOwner]) {
        const why = `${w.name}, ${caller.name}`;
        const expect = async (method: string, request: Json, code: string): Promise<void> => {
          const reply = await w.unary(method, request, caller.credentials);
          assert.equal(reply.code, code, `${why}: ${method} ${JSON.stringify(request)}: ${reply.message}`);
          assertAudit(audit.last(), { ...caller.audit, outcome: code }, `${why}: ${method}`);
        };
        const levels = { read: await seed(w, "ACCESS_LEVEL_READ"), write: await seed(w, "ACCESS_LEVEL_WRITE"), admin: await seed(w, "ACCESS_LEVEL_ADMIN") };
        const can = { read: 1, write: 2, admin: 3 } as const;
        for (const [level, id] of Object.entries(levels) as [keyof typeof can, string][]) {
          const at = (need: keyof typeof can): string => (can[level] >= can[need] ? "ok" : "permission_denied");
          await expect("GetSession", { sessionId: id }, "ok");
          await expect("ListSessionData", { sessionId: id }, "ok");
          await expect("GetSessionData", { sessionId: id, key: "absent" }, "not_found");
          await expect("SetSessionData", { sessionId: id, key: "k", value: "v" }, at("write"));
          await expect("DeleteSessionData", { sessionId: id, key: "k" }, at("write"));
          await expect("ClearSessionData", { sessionId: id }, at("write"));
          await expect("UpdateSession", { sessionId: id, metadata: { a: "1" } }, at("write"));
          await expect("UpdateSession", { sessionId: id, metadata: { b: "2" }, mergeMetadata: true }, at("write"));
          await expect("UpdateSession", { sessionId: id, dataSource: "app" }, at("admin"));
          await expect("ExtendSession", { sessionId: id, ttl: "1200s" }, "ok");
          await expect("UpdateSession", { sessionId: id, accessLevel: "ACCESS_LEVEL_READ" }, at("admin"));
          await expect("CloseSession", { sessionId: id }, "ok");
        }
      }
    }
  });

  test("an API key entry naming a user binds the key to that user", async () => {
    for (const w of wires) {
      const alices = await seed(w, "ACCESS_LEVEL_ADMIN");
      const carols = await seed(w, "ACCESS_LEVEL_ADMIN", "carol");
      assert.equal((await w.unary("GetSession", { sessionId: alices }, kiosk)).code, "not_found");
      assertAudit(audit.last(), { principal: "key:kiosk", tenant: ACME, user: "carol", operation: "get", outcome: "not_found" }, w.name);
      assert.equal((await w.unary("GetSession", { sessionId: carols }, kiosk)).code, "ok");
      assert.equal((await w.unary("CreateSession", { userId: "alice", dataSource: "web" }, kiosk)).code, "permission_denied");
      assert.equal((await w.unary("CreateSession", { userId: "carol", dataSource: "web" }, kiosk)).code, "ok");
    }
  });

  test("the act-as header without scope act_as, or from a caller bound to a user, is PERMISSION_DENIED, never ignored", async () => {
    for (const w of wires) {
      const id = await seed(w, "ACCESS_LEVEL_ADMIN");
      const refused: [string, Credentials, Rec][] = [
        ["service without act_as", { ...callers.service.credentials, actAs: "alice" }, { principal: "key:backend", tenant: ACME }],
        ["user-bound JWT", { ...callers.owner.credentials, actAs: "alice" }, { principal: "jwt:alice", tenant: ACME, user: "alice" }],
        ["user-bound key", { ...kiosk, actAs: "carol" }, { principal: "key:kiosk", tenant: ACME, user: "carol" }],
      ];
      for (const [name, credentials, identity] of refused) {
        for (const [method, request] of [
          ["GetSession", { sessionId: id }],
          ["ListSessions", {}],
          ["CreateSession", { userId: "alice", dataSource: "web" }],
        ] as const) {
          const reply = await w.unary(method, request, credentials);
          assert.equal(reply.code, "permission_denied", `${w.name}, ${name}, ${method}`);
          assert.match(reply.message, /sessiond-act-as/);
          assertAudit(audit.last(), { ...identity, operation: "authorize", outcome: "permission_denied" }, `${w.name}, ${name}`);
        }
        const watched = await w.watch({}, credentials, () => true);
        assert.equal(watched.code, "permission_denied", `${w.name}, ${name}: watch`);
      }
      const after = await w.unary("GetSession", { sessionId: id }, callers.service.credentials);
      assert.equal((after.body["session"] as Json)["version"], "1", "the refused calls changed nothing");
      assert.equal((await w.unary("ListSessions", { userId: "alice" }, callers.service.credentials)).code, "ok");

      const scrape = (headers: Record<string, string>): Promise<number> => fetch(`${app.url}/metrics`, { headers }).then((r) => r.status);
      assert.equal(await scrape({ authorization: `Bearer ${KEYS.scraper.key}` }), 200);
      assert.equal(await scrape({ authorization: `Bearer ${KEYS.scraper.key}`, [ACT_AS]: "alice" }), 403, "GET /metrics refuses the header too");
      assert.equal(await scrape({ authorization: `Bearer ${await hs256({ sub: "alice", tenant: ACME, scope: "metrics" })}` }), 403, "a user-bound caller does not read tenant-wide figures");

      const tooLong = await w.unary("GetSession", { sessionId: id }, { ...callers.delegatingForOwner.credentials, actAs: "x".repeat(300) });
      assert.equal(tooLong.code, "invalid_argument");
      // connect-node percent-encodes grpc-message fully and grpc-js decodes it with decodeURI, which keeps "%3A".
      assert.match(tooLong.message, /^sessiond-act-as(:|%3A) must be at most 256 characters$/);
      assertAudit(audit.last(), { principal: "key:bff", tenant: ACME, operation: "authorize", outcome: "invalid_argument" }, `${w.name}: bad header`);
    }
  });
});
