/**
 * Archive benchmark (issue 16), run by bench/run.ts (part "archive") or alone:
 * `tsx bench/archive-bench.ts`. Prints progress lines, then one JSON line (ArchiveBenchReport).
 *
 * The service (src/main.ts in a process of its own, production entry point,
 * encryption on) runs on a private redis-server with ARCHIVE_DATABASE_URL on a
 * private database of the machine's PostgreSQL (TEST_POSTGRES_URL, default
 * postgres://postgres@127.0.0.1:5432/postgres), created and dropped here.
 *
 * Workload: ARCHIVE_BENCH_RATE sessions expire per second (default 1000) for
 * ARCHIVE_BENCH_SECONDS (default 20): steady state, each session created (by
 * the bench, straight into Redis with the service's own store scripts) 0.5-5 s
 * before its slot with the TTL that makes it due then.
 *
 * Measured:
 * - archive rows/s: rows landed in PostgreSQL per second over the expiry
 *   window, and when the last one landed after the last expiry;
 * - sink lag per row, exactly, from the database: archived_at (the INSERT's
 *   transaction time) minus the event's time (its event-log id), p50/p99/max;
 *   and end to end, expire_time to archived_at (expiry lag included);
 * - anchor, same run: the same rows inserted directly with the sink's own
 *   statement (PgArchive.insert, batches of ARCHIVE_BATCH_SIZE) on one
 *   connection, the database's ceiling for this write on this machine.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { PgArchive, type ArchiveRow } from "../src/archive/pg-archive.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { BenchSealer, scheduleExpiries } from "./expiry-schedule.js";
import { ServiceProcess } from "./service-process.js";


export interface ArchiveBenchReport {
  readonly ratePerSecond: number;
  readonly seconds: number;
  readonly sessions: number;
  readonly archived: number;
  /** Rows landed per second over the expiry window. */
  readonly rowsPerSecond: number;
  /** From the last session's expire_time to its row in PostgreSQL. */
  readonly drainMs: number;
  readonly sinkLagMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly endToEndMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Direct PgArchive.insert of the same number of rows, rows/s (anchor). */
  readonly directInsertRowsPerSecond: number;
  readonly batchSize: number;
  /** From the first create to the last. */
  readonly createSeconds: number;
}

const ADMIN_URL = process.env["TEST_POSTGRES_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const RATE = Number(process.env["ARCHIVE_BENCH_RATE"] ?? 1000);
const SECONDS = Number(process.env["ARCHIVE_BENCH_SECONDS"] ?? 20);
const BATCH = 500;
const CREATE_CONCURRENCY = 64;
/** Sessions are created at most this long before they are due, and at least MIN_LEAD_MS. */
const LEAD_MS = 5000;
const MIN_LEAD_MS = 500;
/** The shape and size of sealed metadata ({"ip":...,"i":...} under AES-GCM): never opened here. */
const SEALED_METADATA = `e1:bench:${"A".repeat(72)}`;
const KEYS = `bench:${Buffer.alloc(32, 9).toString("base64")}`;

function percentiles(sorted: readonly number[]): { p50: number; p99: number; max: number } {
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1] ?? Number.NaN };
}

async function main(): Promise<void> {
  const name = `sessiond_bench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${name}`;
  const redis = await startRedisServer();
  let service: ServiceProcess | undefined;
  const db = new pg.Pool({ connectionString: dbUrl.toString(), max: 2 });
  try {
    service = await ServiceProcess.start([], {
      REDIS_URL: redis.url,
      ENCRYPTION_KEYS: KEYS,
      ARCHIVE_DATABASE_URL: dbUrl.toString(),
      ARCHIVE_BATCH_SIZE: String(BATCH),
      LOG_LEVEL: "warn",
      AUDIT_LOG: "off",
    });
    // Sessions are written straight into Redis with the service's own store (its Lua scripts), not
    // through the RPC port, so that the bench's creates keep pace on a loaded machine and the
    // service's CPU goes to expiring and archiving. Each is due at its slot: RATE per second.
    // Through the sealing wrapper, as the service with these keys writes (sealed identifiers).
    const store = new BenchSealer(KEYS).wrap(new RedisStore({
      url: redis.url,
      keyPrefix: "sd:",
      commandTimeoutMs: 10_000,
      limits: { maxDataKeys: 1000, archiveRetentionMs: 3_600_000, expiryGraceMs: 3_600_000 },
    }));
    const total = RATE * SECONDS;
    console.log(`${total} sessions due at ${RATE}/s over ${SECONDS} s, each created ${MIN_LEAD_MS / 1000}-${LEAD_MS / 1000} s before its slot`);
    const creating = Date.now();
    const schedule = await scheduleExpiries({
      store,
      rate: RATE,
      seconds: SECONDS,
      leadMs: LEAD_MS,
      minLeadMs: MIN_LEAD_MS,
      concurrency: CREATE_CONCURRENCY,
      session: (i) => ({ tenant: "default", sessionId: randomUUID(), userId: `u${i % 5000}`, dataSource: `s${i % 7}`, accessLevel: "read", metadata: SEALED_METADATA, requestId: "" }),
    });
    await store.dispose();
    const createSeconds = (Date.now() - creating) / 1000;
    if (schedule.failed > 0) throw new Error(`${schedule.failed} creates failed: ${schedule.firstFailure}`);
    const late = schedule.late;
    if (late > total / 100) throw new Error(`${late} sessions were created less than ${MIN_LEAD_MS} ms before their slot: the machine cannot keep this rate`);
    const windowEnd = schedule.windowEnd;
    const count = async (): Promise<number> => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM archived_sessions")).rows[0]?.n ?? 0);
    await sleep(Math.max(0, windowEnd - Date.now()));
    const atWindowEnd = await count();
    const deadline = windowEnd + 120_000;
    let archived = atWindowEnd;
    while (archived < total && Date.now() < deadline) {
      await sleep(200);
      archived = await count();
    }
    const lags = await db.query<{ sink: string; e2e: string; archived_ms: string }>(
      `SELECT (extract(epoch FROM archived_at) * 1000 - split_part(event_id, '-', 1)::bigint)::bigint AS sink,
              (extract(epoch FROM archived_at - expire_time) * 1000)::bigint AS e2e,
              (extract(epoch FROM archived_at) * 1000)::bigint AS archived_ms
       FROM archived_sessions`,
    );
    const sink = lags.rows.map((r) => Math.max(0, Number(r.sink))).sort((a, b) => a - b);
    const e2e = lags.rows.map((r) => Math.max(0, Number(r.e2e))).sort((a, b) => a - b);
    const lastArchived = Math.max(...lags.rows.map((r) => Number(r.archived_ms)));
    const inWindow = lags.rows.filter((r) => Number(r.archived_ms) <= windowEnd).length;
    await service.stop();
    service = undefined;

    // Anchor: the sink's statement, straight from here, same number of rows.
    const direct = new PgArchive({ url: dbUrl.toString(), poolSize: 1, timeoutMs: 30_000 });
    const rows: ArchiveRow[] = Array.from({ length: total }, (_, i) => {
      const t = Date.now() + i;
      return {
        eventId: `${t}-0`,
        record: {
          tenant: "anchor",
          sessionId: randomUUID(),
          userId: `u${i % 5000}`,
          dataSource: `s${i % 7}`,
          accessLevel: "read",
          status: "expired",
          createTime: t - 1000,
          expireTime: t,
          lastAccessTime: t - 500,
          endTime: t,
          metadata: "e1:bench:" + "x".repeat(80),
          version: 1,
        },
      };
    });
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < rows.length; i += BATCH) await direct.insert(rows.slice(i, i + BATCH));
    const directSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    await direct.close();

    const report: ArchiveBenchReport = {
      ratePerSecond: RATE,
      seconds: SECONDS,
      sessions: total,
      archived,
      rowsPerSecond: inWindow / SECONDS,
      drainMs: lastArchived - windowEnd,
      sinkLagMs: percentiles(sink),
      endToEndMs: percentiles(e2e),
      directInsertRowsPerSecond: total / directSeconds,
      batchSize: BATCH,
      createSeconds,
    };
    console.log(
      `  archived ${archived}/${total}: ${report.rowsPerSecond.toFixed(0)} rows/s in the window; sink lag p50 ${report.sinkLagMs.p50} ms, p99 ${report.sinkLagMs.p99} ms; direct insert ${report.directInsertRowsPerSecond.toFixed(0)} rows/s`,
    );
    console.log(JSON.stringify(report));
  } finally {
    await service?.stop();
    await db.end();
    await redis.stop();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
