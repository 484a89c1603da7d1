/**
 * The durable archive on the machine's real PostgreSQL (a private database per
 * run) and a private redis-server: every way a session ends lands once, reads
 * come back from PostgreSQL after the Redis archive is gone, ListEndedSessions
 * pages by user, data source and time, and faults (the service killed
 * mid-batch, the database's connections terminated or refused under load)
 * neither lose nor double a row.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { SessionService, SessionStatus } from "../gen/session/v1/session_pb.js";
import { ARCHIVE_HEALTH_SERVICE, type App } from "../src/app.js";
import { listQuery, PgArchive, type ArchiveRow } from "../src/archive/pg-archive.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { useRedisServer } from "./support/redis-server.js";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { startTestApp } from "./support/server.js";

const db = usePostgresDatabase();
const redis = useRedisServer();

type SessionClient = Client<typeof SessionService>;

function clientOf(app: { url: string }): SessionClient {
  return createClient(SessionService, createGrpcTransport({ baseUrl: app.url }));
}

async function archivedIds(): Promise<string[]> {
  const result = await db.query<{ session_id: string }>("SELECT session_id FROM archived_sessions ORDER BY session_id");
  return result.rows.map((r) => r.session_id);
}

/** Waits (polling, generous bound for a busy machine) until the check passes. */
async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting until ${what}`);
}

async function tableExists(): Promise<boolean> {
  const result = await db.query<{ t: string | null }>("SELECT to_regclass('archived_sessions')::text AS t");
  return result.rows[0]?.t !== null;
}

describe("archive sink and read-back", () => {
  let app: App;
  let client: SessionClient;

  before(async () => {
    app = await startTestApp({
      redisUrl: redis.url,
      env: {
        KEY_PREFIX: "a1:",
        ARCHIVE_DATABASE_URL: db.url,
        MAX_SESSIONS_PER_USER: "1",
        SESSIONS_PER_USER_POLICY: "close_oldest",
        ARCHIVE_RETENTION: "1h",
      },
    });
    client = clientOf(app);
    await eventually(tableExists, "the migration created archived_sessions");
  });
  after(async () => {
    await app?.close();
  });

  test("closed, expired and evicted sessions each land once, with metadata sealed as in Redis", async () => {
    const closed = (await client.createSession({ userId: "alice", dataSource: "crm", ttl: { seconds: 60n }, metadata: { ip: "10.0.0.1" } })).session!;
    await client.closeSession({ sessionId: closed.sessionId });
    const expiring = (await client.createSession({ userId: "bob", dataSource: "erp", ttl: { seconds: 1n }, metadata: { k: "v" } })).session!;
    const evicted = (await client.createSession({ userId: "carol", dataSource: "crm", ttl: { seconds: 60n } })).session!;
    const keeper = (await client.createSession({ userId: "carol", dataSource: "crm", ttl: { seconds: 60n } })).session!;
    const ids = [closed.sessionId, expiring.sessionId, evicted.sessionId].sort();
    await eventually(async () => (await archivedIds()).length >= 3, "three ended sessions are archived");
    await sleep(500);
    assert.deepEqual(await archivedIds(), ids);

    const rows = await db.query<{ session_id: string; status: string; metadata: string; user_id: string; tenant: string }>(
      "SELECT session_id, status, metadata, user_id, tenant FROM archived_sessions",
    );
    const status = new Map(rows.rows.map((r) => [r.session_id, r.status]));
    assert.equal(status.get(closed.sessionId), "closed");
    assert.equal(status.get(expiring.sessionId), "expired");
    assert.equal(status.get(evicted.sessionId), "closed");
    for (const row of rows.rows) {
      assert.equal(row.tenant, "default");
      // Sealed with the configured key, never the plaintext JSON.
      assert.match(row.metadata, /^e2:test:/);
      assert.ok(!row.metadata.includes("10.0.0.1"));
    }
    assert.ok(!ids.includes(keeper.sessionId));
  });

  test("GetSession include_ended reads PostgreSQL once the Redis archive is gone", async () => {
    const s = (await client.createSession({ userId: "dave", dataSource: "crm", ttl: { seconds: 60n }, metadata: { note: "kept" } })).session!;
    await client.closeSession({ sessionId: s.sessionId });
    await eventually(async () => (await archivedIds()).includes(s.sessionId), "the closed session is archived");
    // What ARCHIVE_RETENTION does in Redis, done now.
    await redis.raw.del(new RedisKeys("a1:", "default").archive(s.sessionId));
    const got = (await client.getSession({ sessionId: s.sessionId, includeEnded: true })).session!;
    assert.equal(got.status, SessionStatus.CLOSED);
    assert.equal(got.userId, "dave");
    assert.deepEqual(got.metadata, { note: "kept" });
    assert.equal(got.version, s.version + 1n);
    assert.equal(got.createTime?.seconds, s.createTime?.seconds);
    // Without include_ended an ended session stays NOT_FOUND; an unknown one is NOT_FOUND either way.
    await assert.rejects(client.getSession({ sessionId: s.sessionId }), (e) => ConnectError.from(e).code === Code.NotFound);
    await assert.rejects(
      client.getSession({ sessionId: "00000000-0000-4000-8000-000000000000", includeEnded: true }),
      (e) => ConnectError.from(e).code === Code.NotFound,
    );
  });

  test("ListEndedSessions pages by user, data source and time range, newest first", async () => {
    const ended: { id: string; user: string; source: string }[] = [];
    for (let i = 0; i < 7; i++) {
      const user = i % 2 === 0 ? "erin" : "frank";
      const source = i % 3 === 0 ? "bi" : "ops";
      const s = (await client.createSession({ userId: user, dataSource: source, ttl: { seconds: 60n } })).session!;
      await client.closeSession({ sessionId: s.sessionId });
      ended.push({ id: s.sessionId, user, source });
      await sleep(3); // distinct end times, so the expected order is known
    }
    await eventually(async () => ended.every((e) => true) && (await archivedIds()).filter((id) => ended.some((e) => e.id === id)).length === 7, "seven sessions archived");

    const pageAll = async (request: { userId?: string; dataSource?: string; endedAfter?: ReturnType<typeof timestampFromMs>; endedBefore?: ReturnType<typeof timestampFromMs> }): Promise<string[]> => {
      const ids: string[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 20; pages++) {
        const page = await client.listEndedSessions({ ...request, pageSize: 2, pageToken });
        assert.ok(page.sessions.length <= 2);
        ids.push(...page.sessions.map((s) => s.sessionId));
        if (page.nextPageToken === "") return ids;
        pageToken = page.nextPageToken;
      }
      assert.fail("too many pages");
    };
    const newestFirst = [...ended].reverse();
    assert.deepEqual(await pageAll({ userId: "erin" }), newestFirst.filter((e) => e.user === "erin").map((e) => e.id));
    assert.deepEqual(await pageAll({ dataSource: "bi" }), newestFirst.filter((e) => e.source === "bi").map((e) => e.id));
    assert.deepEqual(
      await pageAll({ userId: "frank", dataSource: "ops" }),
      newestFirst.filter((e) => e.user === "frank" && e.source === "ops").map((e) => e.id),
    );
    // A time range: the end times of the 3rd and 6th sessions bound it (after inclusive, before exclusive).
    const times = await db.query<{ session_id: string; ms: string }>(
      "SELECT session_id, (extract(epoch FROM end_time) * 1000)::bigint AS ms FROM archived_sessions",
    );
    const endOf = new Map(times.rows.map((r) => [r.session_id, Number(r.ms)]));
    const from = endOf.get(ended[2]!.id)!;
    const to = endOf.get(ended[5]!.id)!;
    const inRange = await pageAll({ endedAfter: timestampFromMs(from), endedBefore: timestampFromMs(to) });
    assert.deepEqual(inRange, [ended[4]!.id, ended[3]!.id, ended[2]!.id]);

    const first = await client.listEndedSessions({ userId: "erin", pageSize: 1 });
    assert.equal(first.sessions[0]?.status, SessionStatus.CLOSED);

    // The same over the Connect protocol's JSON on HTTP/1.1 (what curl sends), with RFC 3339 times.
    const response = await fetch(`${app.url}/session.v1.SessionService/ListEndedSessions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: "erin", endedAfter: new Date(from).toISOString(), pageSize: 10 }),
    });
    assert.equal(response.status, 200);
    const json = (await response.json()) as { sessions: { sessionId: string; status: string }[] };
    const erinInRange = newestFirst.filter((e, i) => e.user === "erin" && ended.length - 1 - i >= 2).map((e) => e.id);
    assert.deepEqual(json.sessions.map((x) => x.sessionId), erinInRange);
    assert.ok(json.sessions.every((x) => x.status === "SESSION_STATUS_CLOSED"));
  });

  test("ListEndedSessions rejects bad arguments with INVALID_ARGUMENT naming the field", async () => {
    const field = async (request: Parameters<SessionClient["listEndedSessions"]>[0], name: string): Promise<void> => {
      await assert.rejects(client.listEndedSessions(request), (e) => {
        const err = ConnectError.from(e);
        return err.code === Code.InvalidArgument && err.rawMessage.startsWith(`${name}:`);
      });
    };
    await field({ pageToken: "bm90LWEtdG9rZW4" }, "page_token");
    await field({ pageSize: 100_000 }, "page_size");
    await field({ userId: "a\u0000b" }, "user_id");
    await field({ endedAfter: timestampFromMs(2000), endedBefore: timestampFromMs(1000) }, "ended_before");
    await field({ endedAfter: { seconds: -5n, nanos: 0 } }, "ended_after");
    // A ListSessions token is not a ListEndedSessions token.
    const live = await client.createSession({ userId: "gina", dataSource: "x", ttl: { seconds: 60n } });
    await client.createSession({ userId: "hank", dataSource: "x", ttl: { seconds: 60n } });
    const listed = await client.listSessions({ dataSource: "x", pageSize: 1 });
    assert.notEqual(listed.nextPageToken, "");
    await field({ pageToken: listed.nextPageToken }, "page_token");
    assert.ok(live.session);
  });

  test("the sink reports on /metrics and in grpc.health.v1 under sessiond.archive", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: app.url }));
    await eventually(
      async () => (await health.check({ service: ARCHIVE_HEALTH_SERVICE })).status === HealthCheckResponse_ServingStatus.SERVING,
      "the archive health detail is SERVING",
    );
    const text = await (await fetch(`${app.url}/metrics`)).text();
    assert.match(text, /sessiond_archive_rows_total\{result="inserted"\} [1-9]/);
    assert.match(text, /sessiond_archive_lag_seconds_count [1-9]/);
    assert.match(text, /sessiond_archive_database_up 1/);
  });
});

interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Actual Rows"?: number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

test("every ListEndedSessions page reads about a page of index entries, whatever the filter and the table's size", async () => {
  const archive = new PgArchive({ url: db.url, poolSize: 2, timeoutMs: 30_000 });
  try {
    await archive.migrate();
    const base = Date.UTC(2026, 0, 1);
    const rows: ArchiveRow[] = Array.from({ length: 20_000 }, (_, i) => ({
      eventId: `${base + i}-0`,
      record: {
        tenant: "plan",
        sessionId: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
        userId: `user${i % 20}`,
        dataSource: `source${i % 10}`,
        accessLevel: "read",
        status: "expired",
        createTime: base + i * 1000 - 500,
        expireTime: base + i * 1000,
        lastAccessTime: base + i * 1000 - 100,
        endTime: base + i * 1000,
        metadata: "{}",
        version: 1,
      },
    }));
    for (let i = 0; i < rows.length; i += 2000) await archive.insert(rows.slice(i, i + 2000));
    await db.query("ANALYZE archived_sessions");
    const page = 50;
    const mid = { endTime: base + 10_000 * 1000, sessionId: "00000000-0000-4000-8000-000000010000" };
    const cases = [
      { filter: {}, after: undefined },
      { filter: { userId: "user3" }, after: undefined },
      { filter: { dataSource: "source7" }, after: mid },
      { filter: { userId: "user4", dataSource: "source4" }, after: mid },
      { filter: { userId: "user5", endedAfter: base, endedBefore: base + 15_000 * 1000 }, after: mid },
    ];
    for (const { filter, after } of cases) {
      const { text, params } = listQuery("plan", filter, page + 1, after);
      const result = await db.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, params);
      const all = nodes(result.rows[0]!["QUERY PLAN"][0].Plan);
      const label = JSON.stringify(filter);
      assert.ok(!all.some((n) => n["Node Type"] === "Sort" || n["Node Type"] === "Seq Scan"), `${label}: no sort, no sequential scan`);
      const scans = all.filter((n) => n["Node Type"] === "Index Scan" || n["Node Type"] === "Index Only Scan");
      assert.equal(scans.length, 1, `${label}: one index scan`);
      const scan = scans[0]!;
      assert.ok((scan["Actual Rows"] ?? Infinity) <= page + 1, `${label}: ${scan["Actual Rows"]} rows read from ${scan["Index Name"]}`);
      assert.equal(scan["Rows Removed by Filter"] ?? 0, 0, `${label}: nothing read and thrown away (${scan["Index Name"]})`);
    }
  } finally {
    await db.query("DELETE FROM archived_sessions WHERE tenant = 'plan'");
    await archive.close();
  }
});

test("ListEndedSessions needs scope read, stays in the caller's tenant, and is audited as list_ended", async () => {
  const dir = tempDir();
  const audit = join(dir, "audit.log");
  const acmeReader: TestKey = { id: "acme-reader", key: "acme-reader-key-0123456789abcdef", tenant: "acme", scopes: ["read", "write"] };
  const acmeWatcher: TestKey = { id: "acme-watcher", key: "acme-watcher-key-0123456789abcdef", tenant: "acme", scopes: ["watch"] };
  const otherReader: TestKey = { id: "other-reader", key: "other-reader-key-0123456789abcdef", tenant: "other", scopes: ["read"] };
  const app = await startTestApp({
    redisUrl: redis.url,
    env: { KEY_PREFIX: "a2:", ARCHIVE_DATABASE_URL: db.url, API_KEYS_FILE: writeApiKeysFile(dir, [acmeReader, acmeWatcher, otherReader]), AUDIT_LOG: audit },
  });
  try {
    const acme = clientWith(app.url, `Bearer ${acmeReader.key}`);
    const s = (await acme.createSession({ userId: "ivy", dataSource: "crm", ttl: { seconds: 60n } })).session!;
    await acme.closeSession({ sessionId: s.sessionId });
    await eventually(async () => (await archivedIds()).includes(s.sessionId), "the acme session is archived");
    assert.deepEqual(
      (await acme.listEndedSessions({ userId: "ivy" })).sessions.map((x) => x.sessionId),
      [s.sessionId],
    );
    // Another tenant sees nothing of it, in listings or by id.
    const other = clientWith(app.url, `Bearer ${otherReader.key}`);
    assert.deepEqual((await other.listEndedSessions({ userId: "ivy" })).sessions, []);
    await redis.raw.del(new RedisKeys("a2:", "acme").archive(s.sessionId));
    await assert.rejects(other.getSession({ sessionId: s.sessionId, includeEnded: true }), (e) => ConnectError.from(e).code === Code.NotFound);
    assert.equal((await acme.getSession({ sessionId: s.sessionId, includeEnded: true })).session?.sessionId, s.sessionId);
    // Without scope read: PERMISSION_DENIED.
    const watcher = clientWith(app.url, `Bearer ${acmeWatcher.key}`);
    await assert.rejects(watcher.listEndedSessions({ userId: "ivy" }), (e) => ConnectError.from(e).code === Code.PermissionDenied);
    const records = readFileSync(audit, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, unknown>);
    const listed = records.filter((r) => r["operation"] === "list_ended");
    assert.ok(listed.some((r) => r["principal"] === "key:acme-reader" && r["tenant"] === "acme" && r["outcome"] === "ok"));
    assert.ok(records.some((r) => r["operation"] === "authorize" && r["principal"] === "key:acme-watcher" && String(r["method"]).endsWith("/ListEndedSessions")));
  } finally {
    await app.close();
  }
});
