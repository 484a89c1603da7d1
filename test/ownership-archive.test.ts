/**
 * Ownership on the archive paths (issues 16 and 17): ListEndedSessions and
 * GetSession include_ended served from PostgreSQL after the Redis archive is
 * gone, for every caller of test/ownership.test.ts (the owner, another user of
 * the tenant, a user of another tenant, a service principal, a delegating
 * service principal acting for the owner and for the other user), over Connect
 * JSON on HTTP/1.1 and gRPC (@grpc/grpc-js), with the status code and the
 * audit record of each call. A caller acting for a user lists only that
 * user's ended sessions whatever user_id it names (another user's name: an
 * empty page, not an error), and reads another user's archived session as
 * NOT_FOUND, identical to an unknown one.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { App } from "../src/app.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { tempDir } from "./support/auth.js";
import { ACME, assertAudit, auditCapture, authEnv, GLOBEX, makeCallers, type Caller, type Callers } from "./support/ownership-callers.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";
import { connectJsonClient, grpcJsClient, type Credentials, type Json, type WireClient } from "./support/wire-clients.js";

const db = usePostgresDatabase();
const redis = useRedisServer();
const PREFIX = "oa:";
const SERVICE = "session.v1.SessionService";

/** One ended session of the fixture, as PostgreSQL holds it. */
interface Ended {
  readonly id: string;
  readonly tenant: string;
  readonly user: string;
  readonly dataSource: string;
  readonly status: "SESSION_STATUS_CLOSED" | "SESSION_STATUS_EXPIRED";
}

/** Waits (polling, generous bound for a busy machine) until the check passes. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting until ${what}`);
}

/** Whether `caller` reaches `session`: its tenant, and its user unless it acts for none. */
function reaches(caller: Caller, session: { tenant: string; user: string }): boolean {
  return caller.tenant === session.tenant && (caller.user === undefined || caller.user === session.user);
}

describe("ownership of archived sessions (PostgreSQL, after the Redis archive is gone)", () => {
  let app: App;
  let audit: ReturnType<typeof auditCapture>;
  let callers: Callers;
  let wires: WireClient[];
  const ended: Ended[] = [];
  let live: string;

  before(async () => {
    audit = auditCapture();
    callers = await makeCallers();
    app = await startTestApp({
      redisUrl: redis.url,
      env: { ...authEnv(tempDir()), KEY_PREFIX: PREFIX, ARCHIVE_DATABASE_URL: db.url, ARCHIVE_RETENTION: "1h" },
      auditDestination: audit.destination,
    });
    wires = [connectJsonClient(app.url), grpcJsClient(`127.0.0.1:${app.port}`)];
    const w = wires[0]!;
    const create = async (user: string, dataSource: string, ttl: string, as: Credentials): Promise<string> => {
      const created = await w.unary("CreateSession", { userId: user, dataSource, accessLevel: "ACCESS_LEVEL_ADMIN", ttl, metadata: { note: user } }, as);
      assert.equal(created.code, "ok", `seed: ${created.message}`);
      return String((created.body["session"] as Json)["sessionId"]);
    };
    const close = async (id: string, as: Credentials): Promise<void> => {
      assert.equal((await w.unary("CloseSession", { sessionId: id }, as)).code, "ok");
    };
    const service = callers.service.credentials;
    const globexAlice = callers.otherTenant.credentials;
    // alice: one closed by the service, one closed by herself, one expired; bob: one closed; alice of globex: one closed.
    const a1 = await create("alice", "web", "600s", service);
    await close(a1, service);
    const a2 = await create("alice", "app", "600s", service);
    await close(a2, callers.owner.credentials);
    const a3 = await create("alice", "web", "1s", service);
    const b1 = await create("bob", "web", "600s", service);
    await close(b1, service);
    const g1 = await create("alice", "web", "600s", globexAlice);
    await close(g1, globexAlice);
    live = await create("alice", "web", "600s", service);
    ended.push(
      { id: a1, tenant: ACME, user: "alice", dataSource: "web", status: "SESSION_STATUS_CLOSED" },
      { id: a2, tenant: ACME, user: "alice", dataSource: "app", status: "SESSION_STATUS_CLOSED" },
      { id: a3, tenant: ACME, user: "alice", dataSource: "web", status: "SESSION_STATUS_EXPIRED" },
      { id: b1, tenant: ACME, user: "bob", dataSource: "web", status: "SESSION_STATUS_CLOSED" },
      { id: g1, tenant: GLOBEX, user: "alice", dataSource: "web", status: "SESSION_STATUS_CLOSED" },
    );
    await eventually(async () => {
      const rows = await db.query<{ session_id: string }>("SELECT session_id FROM archived_sessions");
      const archived = new Set(rows.rows.map((r) => r.session_id));
      return ended.every((e) => archived.has(e.id));
    }, "every ended session is in PostgreSQL");
    // What ARCHIVE_RETENTION does in Redis, done now: from here on only PostgreSQL has them.
    for (const e of ended) await redis.raw.del(new RedisKeys(PREFIX, e.tenant).archive(e.id));
  });
  after(async () => {
    for (const wire of wires ?? []) wire.close();
    await app?.close();
  });

  async function assertRedisArchiveGone(): Promise<void> {
    for (const e of ended) assert.equal(await redis.raw.exists(new RedisKeys(PREFIX, e.tenant).archive(e.id)), 0, `${e.id}: no Redis archive left`);
    const rows = await db.query("SELECT 1 FROM archived_sessions WHERE session_id = ANY($1)", [ended.map((e) => e.id)]);
    assert.equal(rows.rowCount, ended.length, "PostgreSQL holds every ended session");
  }

  test("ListEndedSessions: a caller acting for a user lists only that user's ended sessions, whatever user_id it names; services see the whole tenant; other tenants nothing", async () => {
    await assertRedisArchiveGone();
    const filters: Json[] = [{}, { userId: "alice" }, { userId: "bob" }, { userId: "nobody" }, { dataSource: "web" }, { userId: "alice", dataSource: "app" }];
    for (const w of wires) {
      for (const caller of Object.values(callers)) {
        for (const filter of filters) {
          const why = `${w.name}, ${caller.name}, ${JSON.stringify(filter)}`;
          // Page by one, so that every page token is exercised too: a token never widens the listing.
          const listed: Json[] = [];
          let pageToken = "";
          let pages = 0;
          do {
            const reply = await w.unary("ListEndedSessions", { ...filter, pageSize: 1, pageToken }, caller.credentials);
            assert.equal(reply.code, "ok", `${why}: ${reply.message}`);
            const record = audit.last();
            assertAudit(record, { ...caller.audit, operation: "list_ended", outcome: "ok", method: `${SERVICE}/ListEndedSessions` }, why);
            assert.equal(record["sessionId"], undefined, `${why}: a listing names no session in the audit`);
            const sessions = (reply.body["sessions"] ?? []) as Json[];
            assert.ok(sessions.length <= 1, `${why}: page size`);
            listed.push(...sessions);
            pageToken = String(reply.body["nextPageToken"] ?? "");
            assert.ok(++pages <= ended.length + 1, `${why}: too many pages`);
          } while (pageToken !== "");

          const requested = filter as { userId?: string; dataSource?: string };
          const expected = ended.filter(
            (e) =>
              reaches(caller, e) &&
              (requested.userId === undefined || requested.userId === e.user) &&
              (requested.dataSource === undefined || requested.dataSource === e.dataSource),
          );
          assert.deepEqual(listed.map((s) => String(s["sessionId"])).sort(), expected.map((e) => e.id).sort(), `${why}: exactly the reachable ended sessions`);
          assert.ok(!listed.some((s) => s["sessionId"] === live), `${why}: a live session is not listed`);
          for (const s of listed) {
            const e = ended.find((x) => x.id === s["sessionId"])!;
            assert.deepEqual([s["userId"], s["status"], s["dataSource"]], [e.user, e.status, e.dataSource], `${why}: ${e.id} as archived`);
            if (caller.user !== undefined) assert.equal(s["userId"], caller.user, `${why}: only its own user's sessions`);
          }
          if (caller.user !== undefined && requested.userId !== undefined && requested.userId !== caller.user) {
            assert.equal(listed.length, 0, `${why}: another user's name gives an empty page`);
            assert.equal(pages, 1, `${why}: and no next page`);
          }
        }
      }
    }
  });

  test("GetSession include_ended from PostgreSQL: found for the owner (directly or delegated) and the tenant's service; NOT_FOUND for anyone else, identical to an unknown session", async () => {
    await assertRedisArchiveGone();
    for (const w of wires) {
      for (const caller of Object.values(callers)) {
        for (const e of ended) {
          const why = `${w.name}, ${caller.name}, ${e.user}@${e.tenant} ${e.status}`;
          const ok = reaches(caller, e);
          const reply = await w.unary("GetSession", { sessionId: e.id, includeEnded: true }, caller.credentials);
          assert.equal(reply.code, ok ? "ok" : "not_found", `${why}: ${reply.message}`);
          assertAudit(audit.last(), { ...caller.audit, operation: "get", outcome: reply.code, sessionId: e.id, method: `${SERVICE}/GetSession` }, why);
          if (ok) {
            const session = reply.body["session"] as Json;
            assert.deepEqual([session["sessionId"], session["userId"], session["status"], session["dataSource"]], [e.id, e.user, e.status, e.dataSource], `${why}: as archived`);
            // Read back from PostgreSQL and opened with the configured key.
            const metadata = session["metadata"] as Json;
            assert.ok(JSON.stringify(metadata).includes(e.user), `${why}: metadata opened`);
          } else {
            assert.equal(reply.body["session"], undefined, `${why}: nothing of the session in the reply`);
            const missing = randomUUID();
            const onMissing = await w.unary("GetSession", { sessionId: missing, includeEnded: true }, caller.credentials);
            assert.deepEqual([onMissing.code, onMissing.message], [reply.code, reply.message], `${why}: indistinguishable from an unknown session`);
            assertAudit(audit.last(), { ...caller.audit, operation: "get", outcome: "not_found", sessionId: missing }, `${why}: unknown session`);
          }
          // Without include_ended an ended session is NOT_FOUND for everyone.
          const liveOnly = await w.unary("GetSession", { sessionId: e.id }, caller.credentials);
          assert.equal(liveOnly.code, "not_found", `${why}: without include_ended`);
          assertAudit(audit.last(), { ...caller.audit, operation: "get", outcome: "not_found", sessionId: e.id }, `${why}: without include_ended`);
        }
      }
    }
    // The reads left PostgreSQL as it was and brought nothing back into Redis.
    await assertRedisArchiveGone();
  });
});
