/**
 * Ownership in the durable archive (issues 16 and 17): GetSession's fallback
 * to PostgreSQL and ListEndedSessions keep a caller acting for a user to that
 * user's ended sessions, over Connect JSON on HTTP/1.1 and gRPC with
 * @grpc/grpc-js, with the audit record of each call.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { DestinationStream } from "pino";
import type { App } from "../src/app.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { AUDIENCE, hs256, HS_SECRET, ISSUER, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";
import { connectJsonClient, grpcJsClient, type Credentials, type Json, type WireClient } from "./support/wire-clients.js";

const db = usePostgresDatabase();
const redis = useRedisServer();
const PREFIX = "ao:";
const TENANT = "acme";

const KEYS = {
  backend: { id: "backend", key: `k-${randomUUID()}`, tenant: TENANT, scopes: ["read", "write"] },
  bff: { id: "bff", key: `k-${randomUUID()}`, tenant: TENANT, scopes: ["read", "act_as"] },
} satisfies Record<string, TestKey>;

type Rec = Readonly<Record<string, unknown>>;

describe("the durable archive keeps ownership", () => {
  let app: App;
  let wires: WireClient[];
  const lines: string[] = [];
  const destination: DestinationStream = { write: (line: string) => void lines.push(line) };
  const lastAudit = (): Rec => JSON.parse(lines[lines.length - 1] ?? "{}") as Rec;
  const service: Credentials = { authorization: `Bearer ${KEYS.backend.key}` };
  let callers: { name: string; credentials: Credentials; user: string | undefined; audit: Rec }[];

  before(async () => {
    const dir = tempDir();
    app = await startTestApp({
      redisUrl: redis.url,
      auditDestination: destination,
      env: {
        KEY_PREFIX: PREFIX,
        ARCHIVE_DATABASE_URL: db.url,
        API_KEYS_FILE: writeApiKeysFile(dir, Object.values(KEYS)),
        JWT_HS256_SECRET: HS_SECRET,
        JWT_ISSUER: ISSUER,
        JWT_AUDIENCE: AUDIENCE,
        JWT_USER_CLAIM: "sub",
        AUDIT_LOG: "stdout",
      },
    });
    wires = [connectJsonClient(app.url), grpcJsClient(`127.0.0.1:${app.port}`)];
    const jwt = async (sub: string): Promise<string> => `Bearer ${await hs256({ sub, tenant: TENANT, scope: "read" })}`;
    callers = [
      { name: "owner", credentials: { authorization: await jwt("alice") }, user: "alice", audit: { principal: "jwt:alice", user: "alice" } },
      { name: "another user", credentials: { authorization: await jwt("bob") }, user: "bob", audit: { principal: "jwt:bob", user: "bob" } },
      { name: "delegating for the owner", credentials: { authorization: `Bearer ${KEYS.bff.key}`, actAs: "alice" }, user: "alice", audit: { principal: "key:bff", user: "alice", delegated: true } },
      { name: "delegating for another user", credentials: { authorization: `Bearer ${KEYS.bff.key}`, actAs: "bob" }, user: "bob", audit: { principal: "key:bff", user: "bob", delegated: true } },
      { name: "service", credentials: service, user: undefined, audit: { principal: "key:backend" } },
    ];
  });
  after(async () => {
    for (const w of wires ?? []) w.close();
    await app?.close();
  });

  /** A closed session of `user`, archived in PostgreSQL and gone from Redis's own archive. */
  async function endedOnlyInPostgres(w: WireClient, user: string): Promise<string> {
    const created = await w.unary("CreateSession", { userId: user, dataSource: "crm", ttl: "60s" }, service);
    assert.equal(created.code, "ok", created.message);
    const id = String((created.body["session"] as Json)["sessionId"]);
    assert.equal((await w.unary("CloseSession", { sessionId: id }, service)).code, "ok");
    const deadline = Date.now() + 30_000;
    for (;;) {
      const rows = await db.query("SELECT 1 FROM archived_sessions WHERE session_id = $1", [id]).catch(() => ({ rowCount: 0 }));
      if ((rows.rowCount ?? 0) > 0) break;
      assert.ok(Date.now() < deadline, "the closed session reached PostgreSQL");
      await sleep(100);
    }
    // What ARCHIVE_RETENTION does in Redis, done now: the read must come from PostgreSQL.
    await redis.raw.del(new RedisKeys(PREFIX, TENANT).archive(id));
    return id;
  }

  test("GetSession include_ended from PostgreSQL: another user's ended session is NOT_FOUND, exactly as a missing one", async () => {
    for (const w of wires) {
      const alices = await endedOnlyInPostgres(w, "alice");
      for (const caller of callers) {
        const why = `${w.name}, ${caller.name}`;
        const reaches = caller.user === undefined || caller.user === "alice";
        const reply = await w.unary("GetSession", { sessionId: alices, includeEnded: true }, caller.credentials);
        assert.equal(reply.code, reaches ? "ok" : "not_found", `${why}: ${reply.message}`);
        if (reaches) assert.equal((reply.body["session"] as Json)["status"], "SESSION_STATUS_CLOSED");
        const audit = lastAudit();
        for (const [k, v] of Object.entries({ ...caller.audit, tenant: TENANT, operation: "get", outcome: reply.code, sessionId: alices })) assert.deepEqual(audit[k], v, `${why}: audit ${k}`);
        if (!reaches) {
          const missing = await w.unary("GetSession", { sessionId: randomUUID(), includeEnded: true }, caller.credentials);
          assert.deepEqual([missing.code, missing.message], [reply.code, reply.message], `${why}: indistinguishable from a missing session`);
        }
      }
    }
  });

  test("ListEndedSessions: a caller acting for a user lists that user's ended sessions only, whatever the filter says", async () => {
    for (const w of wires) {
      const alices = await endedOnlyInPostgres(w, "alice");
      const bobs = await endedOnlyInPostgres(w, "bob");
      for (const caller of callers) {
        for (const filter of [{}, { userId: "alice" }, { userId: "bob" }]) {
          const why = `${w.name}, ${caller.name}, ${JSON.stringify(filter)}`;
          const reply = await w.unary("ListEndedSessions", { ...filter, pageSize: 1000 }, caller.credentials);
          assert.equal(reply.code, "ok", `${why}: ${reply.message}`);
          const audit = lastAudit();
          for (const [k, v] of Object.entries({ ...caller.audit, tenant: TENANT, operation: "list_ended", outcome: "ok" })) assert.deepEqual(audit[k], v, `${why}: audit ${k}`);
          const listed = ((reply.body["sessions"] ?? []) as Json[]).map((s) => ({ id: String(s["sessionId"]), user: String(s["userId"]) }));
          const ids = new Set(listed.map((s) => s.id));
          const requested = (filter as { userId?: string }).userId;
          const sees = (user: string): boolean => (caller.user === undefined || caller.user === user) && (requested === undefined || requested === user);
          assert.equal(ids.has(alices), sees("alice"), `${why}: alice's ended session`);
          assert.equal(ids.has(bobs), sees("bob"), `${why}: bob's ended session`);
          if (caller.user !== undefined) assert.ok(listed.every((s) => s.user === caller.user), `${why}: only its user's sessions`);
        }
      }
    }
  });
});
