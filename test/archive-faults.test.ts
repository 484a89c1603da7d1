/**
 * The archive sink under faults, on the machine's real PostgreSQL and a
 * private redis-server: the service killed (SIGKILL) with a batch read and
 * not yet written, then a new process; the database's connections terminated
 * again and again under load; the database refusing connections for a while
 * (sessions keep being served, the backlog waits, then catches up). In every
 * case each ended session is in the archive exactly once.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { SessionService } from "../gen/session/v1/session_pb.js";
import { ARCHIVE_HEALTH_SERVICE, type App } from "../src/app.js";
import { ArchiveRetention } from "../src/archive/archive-retention.js";
import { PgArchive } from "../src/archive/pg-archive.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { usePostgresDatabase } from "./support/postgres.js";
import { startSessiond, type SessiondProcess } from "./support/process.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp, TEST_ENCRYPTION_KEYS } from "./support/server.js";

const db = usePostgresDatabase();
const redis = useRedisServer();

type SessionClient = Client<typeof SessionService>;

function clientOf(url: string): SessionClient {
  return createClient(SessionService, createGrpcTransport({ baseUrl: url }));
}

async function archivedIds(): Promise<Set<string>> {
  const result = await db.query<{ session_id: string }>("SELECT session_id FROM archived_sessions");
  return new Set(result.rows.map((r) => r.session_id));
}

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting until ${what}`);
}

/** Every id is archived, and the table holds no row besides them (and `others`). */
async function assertArchivedOnce(ids: readonly string[], others: ReadonlySet<string> = new Set()): Promise<void> {
  const rows = await db.query<{ session_id: string; n: string }>("SELECT session_id, count(*) AS n FROM archived_sessions GROUP BY session_id");
  const seen = new Map(rows.rows.map((r) => [r.session_id, Number(r.n)]));
  for (const id of ids) assert.equal(seen.get(id), 1, `session ${id} archived once`);
  for (const id of seen.keys()) assert.ok(ids.includes(id) || others.has(id), `unexpected row ${id}`);
}

/** Creates and closes `n` sessions, `concurrency` at a time; returns their ids. */
async function endSessions(client: SessionClient, n: number, concurrency = 8, user = "load"): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const s = (await client.createSession({ userId: user, dataSource: "bench", ttl: { seconds: 300n } })).session!;
        await client.closeSession({ sessionId: s.sessionId });
        ids.push(s.sessionId);
      }
    }),
  );
  return ids;
}

describe("archive sink faults", () => {
  const processes: SessiondProcess[] = [];
  after(() => {
    for (const p of processes) p.kill();
  });

  test("killed mid-batch (SIGKILL) and replaced: every ended session lands once", async () => {
    const env = {
      REDIS_URL: redis.url,
      KEY_PREFIX: "k1:",
      ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
      ARCHIVE_DATABASE_URL: db.url,
      ARCHIVE_BATCH_SIZE: "50",
      ARCHIVE_CLAIM_IDLE: "500ms",
      ARCHIVE_DB_TIMEOUT: "30s",
      LOG_LEVEL: "info",
      AUDIT_LOG: "off",
    };
    const first = await startSessiond({ env });
    processes.push(first);
    const client = clientOf(first.url);
    await eventually(async () => (await db.query("SELECT to_regclass('archived_sessions')::text AS t")).rows[0]?.t !== null, "the schema exists");
    const early = await endSessions(client, 40);
    await eventually(async () => (await archivedIds()).size >= early.length, "the first sessions are archived");

    // Hold the table so the sink's next INSERT waits: the batch it read stays unwritten and unacknowledged.
    const locker = await db.connect();
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE archived_sessions IN EXCLUSIVE MODE");
    const late = await endSessions(client, 120);
    const key = new RedisKeys("k1:", "").events();
    await eventually(async () => {
      const groups = (await redis.raw.call("XINFO", "GROUPS", key)) as unknown[][];
      const fields = groups[0] ?? [];
      return Number(fields[fields.indexOf("pending") + 1]) > 0;
    }, "the sink holds a read batch");
    first.kill();
    await first.exited;
    await locker.query("ROLLBACK");
    locker.release();
    assert.ok((await archivedIds()).size < early.length + late.length, "the killed process had not archived everything");

    // A new process (another consumer name) takes over the dead one's pending entries once idle.
    const second = await startSessiond({ env });
    processes.push(second);
    const all = [...early, ...late];
    await eventually(async () => (await archivedIds()).size >= all.length, "every ended session is archived after the restart");
    await sleep(1000);
    await assertArchivedOnce(all);
    second.kill();
    await second.exited;
  });

  test("connections terminated under load, then the database refusing connections: sessions keep being served, no loss", async () => {
    const before = await archivedIds();
    let app: App | undefined;
    try {
      app = await startTestApp({
        redisUrl: redis.url,
        env: { KEY_PREFIX: "k1:", ARCHIVE_DATABASE_URL: db.url, ARCHIVE_BATCH_SIZE: "20", ARCHIVE_DB_TIMEOUT: "2s" },
      });
      const client = clientOf(app.url);
      const health = createClient(Health, createGrpcTransport({ baseUrl: app.url }));
      await eventually(
        async () => (await health.check({ service: ARCHIVE_HEALTH_SERVICE })).status === HealthCheckResponse_ServingStatus.SERVING,
        "the archive is serving",
      );

      // pg_terminate_backend every 100 ms while sessions end.
      let terminating = true;
      let terminated = 0;
      const killer = (async () => {
        while (terminating) {
          terminated += await db.terminateSessiond();
          await sleep(100);
        }
      })();
      const underLoad = await endSessions(client, 300);
      terminating = false;
      await killer;
      assert.ok(terminated > 0, "connections of the service were terminated");

      // The database refuses new connections and drops the open ones.
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS false`);
      await db.terminateSessiond();
      const whileDown = await endSessions(client, 60);
      // Sessions are still served: create, read, list.
      const live = (await client.createSession({ userId: "during-outage", dataSource: "x" })).session!;
      assert.equal((await client.getSession({ sessionId: live.sessionId })).session?.userId, "during-outage");
      await eventually(
        async () => (await health.check({ service: ARCHIVE_HEALTH_SERVICE })).status === HealthCheckResponse_ServingStatus.NOT_SERVING,
        "the archive health detail reports the outage",
      );
      assert.equal((await health.check({ service: "" })).status, HealthCheckResponse_ServingStatus.SERVING);
      const metrics = await (await fetch(`${app.url}/metrics`)).text();
      assert.match(metrics, /sessiond_archive_database_up 0/);

      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`);
      const all = [...underLoad, ...whileDown];
      await eventually(async () => {
        const ids = await archivedIds();
        return all.every((id) => ids.has(id));
      }, "the backlog is archived after the database returns");
      await eventually(
        async () => (await health.check({ service: ARCHIVE_HEALTH_SERVICE })).status === HealthCheckResponse_ServingStatus.SERVING,
        "the archive health detail recovers",
      );
      await assertArchivedOnce(all, before);
    } finally {
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`).catch(() => {});
      await app?.close();
    }
  });

  test("the archive health detail follows the database while no session ends", async () => {
    let app: App | undefined;
    try {
      app = await startTestApp({ redisUrl: redis.url, env: { KEY_PREFIX: "k4:", ARCHIVE_DATABASE_URL: db.url, ARCHIVE_DB_TIMEOUT: "1s" } });
      const health = createClient(Health, createGrpcTransport({ baseUrl: app.url }));
      const status = async (): Promise<HealthCheckResponse_ServingStatus> => (await health.check({ service: ARCHIVE_HEALTH_SERVICE })).status;
      await eventually(async () => (await status()) === HealthCheckResponse_ServingStatus.SERVING, "the archive is serving");
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS false`);
      await db.terminateSessiond();
      await eventually(async () => (await status()) === HealthCheckResponse_ServingStatus.NOT_SERVING, "NOT_SERVING while the database refuses");
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`);
      await eventually(async () => (await status()) === HealthCheckResponse_ServingStatus.SERVING, "SERVING again without any write");
    } finally {
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`).catch(() => {});
      await app?.close();
    }
  });

  test("Redis restarted empty: the consumer group is created again and new ends are archived", async () => {
    let app: App | undefined;
    try {
      app = await startTestApp({ redisUrl: redis.url, env: { KEY_PREFIX: "k1:", ARCHIVE_DATABASE_URL: db.url } });
      const client = clientOf(app.url);
      await redis.stop();
      await redis.start();
      const ids = await (async () => {
        const deadline = Date.now() + 30_000;
        for (;;) {
          try {
            return await endSessions(client, 10, 2, "after-restart");
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await sleep(200);
          }
        }
      })();
      await eventually(async () => {
        const archived = await archivedIds();
        return ids.every((id) => archived.has(id));
      }, "sessions ended after the restart are archived");
    } finally {
      await app?.close();
    }
  });

  test("an outage longer than the event log's retention: entries trimmed before delivery are counted as lost, the rest land once", async () => {
    const lostTrimmed = async (url: string): Promise<number> => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return Number(/sessiond_archive_lost_events_total\{reason="trimmed"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    let app: App | undefined;
    try {
      app = await startTestApp({
        redisUrl: redis.url,
        env: { KEY_PREFIX: "k3:", ARCHIVE_DATABASE_URL: db.url, ARCHIVE_BATCH_SIZE: "10", WATCH_RETENTION_EVENTS: "100", ARCHIVE_DB_TIMEOUT: "1s" },
      });
      await eventually(async () => (await db.query("SELECT to_regclass('archived_sessions')::text AS t")).rows[0]?.t !== null, "the schema exists");
      const before = await archivedIds();
      const client = clientOf(app.url);
      const lostBefore = await lostTrimmed(app.url);
      await endSessions(client, 5, 1, "warm");
      await eventually(async () => (await archivedIds()).size >= before.size + 5, "the first sessions are archived");
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS false`);
      await db.terminateSessiond();
      const ended = await endSessions(client, 300, 4, "outage");
      await eventually(async () => (await lostTrimmed(app!.url)) > lostBefore, "the trimmed entries are counted", 60_000);
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`);
      // Caught up: the group has been handed the whole log and acknowledged it.
      const key = new RedisKeys("k3:", "").events();
      await eventually(async () => {
        const [group] = (await redis.raw.call("XINFO", "GROUPS", key)) as unknown[][];
        const log = (await redis.raw.call("XINFO", "STREAM", key)) as unknown[];
        const field = (list: unknown[] | undefined, name: string): unknown => list?.[list.indexOf(name) + 1];
        return field(group, "pending") === 0 && field(group, "last-delivered-id") === field(log, "last-generated-id");
      }, "the sink caught up");
      // The backlog gauge does not keep counting the entries that were trimmed.
      await eventually(async () => /\nsessiond_archive_backlog_events 0\n/.test(await (await fetch(`${app!.url}/metrics`)).text()), "the backlog gauge is back to 0");
      const archived = await archivedIds();
      const missing = ended.filter((id) => !archived.has(id)).length;
      const lost = (await lostTrimmed(app.url)) - lostBefore;
      assert.ok(missing > 0, "the outage outlasted the log: some ended sessions could not be archived");
      assert.ok(missing <= lost, `${missing} sessions missing, ${lost} entries counted as lost`);
      assert.ok(missing < ended.length, "what the log still held was archived");
      const dup = await db.query("SELECT session_id FROM archived_sessions GROUP BY session_id HAVING count(*) > 1");
      assert.equal(dup.rowCount, 0);
    } finally {
      await db.admin(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS true`).catch(() => {});
      await app?.close();
    }
  });

  test("ARCHIVE_DB_RETENTION deletes, batch by batch, exactly the sessions that ended before the cutoff", async () => {
    const archive = new PgArchive({ url: db.url, poolSize: 2, timeoutMs: 5000 });
    try {
      await archive.migrate();
      const day = 86_400_000;
      const now = Date.now();
      const row = (i: number, endTime: number) => ({
        eventId: `${endTime}-${i}`,
        record: {
          tenant: "retention",
          sessionId: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
          userId: "u",
          dataSource: "d",
          accessLevel: "read" as const,
          status: "expired" as const,
          createTime: endTime - 1000,
          expireTime: endTime,
          lastAccessTime: endTime - 500,
          endTime,
          metadata: "{}",
          version: 1,
        },
      });
      const old = Array.from({ length: 7 }, (_, i) => row(i, now - 40 * day - i));
      const recent = Array.from({ length: 3 }, (_, i) => row(100 + i, now - 10 * day + i));
      assert.equal(await archive.insert([...old, ...recent]), 10);
      // Delivered again (at-least-once): nothing new.
      assert.equal(await archive.insert(old.slice(0, 2)), 0);
      let batches = 0;
      const retention = new ArchiveRetention({ archive, retentionMs: 30 * day, batchSize: 2, onDeleted: () => batches++ });
      assert.equal(await retention.purge(now), 7);
      assert.equal(batches, 4);
      const left = await db.query<{ session_id: string }>("SELECT session_id FROM archived_sessions WHERE tenant = 'retention' ORDER BY session_id");
      assert.deepEqual(
        left.rows.map((r) => r.session_id),
        recent.map((r) => r.record.sessionId),
      );
    } finally {
      await archive.close();
    }
  });
});
