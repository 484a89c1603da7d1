/**
 * The cost of REDIS_WAIT_REPLICAS (issue 14), on a private primary and one
 * replica (redis-server --replicaof) on loopback: two RedisStores on the same
 * primary, one without WAIT and one with REDIS_WAIT_REPLICAS=1, run
 * CreateSession and SetData (the store calls, no gRPC) in interleaved rounds
 * (A B, then B A, ...), at 1 call in flight (the latency WAIT adds) and at
 * CONCURRENCY (throughput; writes finishing together share one WAIT).
 * Latencies and call counts are pooled per variant; the ratio is WAIT 1 over
 * WAIT 0 of the same run, so a busy machine affects both alike.
 *
 *   npx tsx bench/replica-wait-bench.ts [roundMs] [rounds]
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { runAsBenchMain } from "./child-main.js";

const ROUND_MS = Number(process.argv[2] ?? 1500);
const ROUNDS = Number(process.argv[3] ?? 4);
const CONCURRENCY = 16;
const TENANT = "bench";
const LIMITS = { maxDataKeys: 1000, archiveRetentionMs: 3_600_000, expiryGraceMs: 3_600_000 };

export interface WaitRow {
  readonly operation: "create" | "setData";
  readonly concurrency: number;
  readonly replicas: 0 | 1;
  readonly calls: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
}

export interface ReplicaWaitReport {
  readonly roundMs: number;
  readonly rounds: number;
  readonly rows: readonly WaitRow[];
  readonly error?: string;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? Number.NaN;
}

interface Pool {
  latencies: number[];
  elapsedMs: number;
  errors: number;
}

async function round(call: () => Promise<unknown>, concurrency: number, pool: Pool): Promise<void> {
  const end = performance.now() + ROUND_MS;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        try {
          await call();
          pool.latencies.push(performance.now() - t0);
        } catch {
          pool.errors += 1;
        }
      }
    }),
  );
  pool.elapsedMs += performance.now() - start;
}

async function measure(log: (line: string) => void): Promise<ReplicaWaitReport> {
  const primary = await startRedisServer();
  // --dir: the replica writes the snapshot of its full sync there, not in the working directory.
  const dir = mkdtempSync(join(tmpdir(), "sessiond-replica-wait-"));
  const replica = await startRedisServer(["--replicaof", "127.0.0.1", String(primary.port), "--dir", dir]);
  const stores = {
    0: new RedisStore({ url: primary.url, keyPrefix: "bw0:", limits: LIMITS, commandTimeoutMs: 5000 }),
    1: new RedisStore({ url: primary.url, keyPrefix: "bw1:", limits: LIMITS, commandTimeoutMs: 5000, replicaWait: { replicas: 1, timeoutMs: 1000 } }),
  } as const;
  try {
    const raw = replica.client();
    for (let i = 0; i < 200 && !/master_link_status:up/.test(await raw.info("replication")); i++) await new Promise((r) => setTimeout(r, 50));
    raw.disconnect();
    const create = (store: RedisStore) => () =>
      store.create({ tenant: TENANT, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 3_600_000, metadata: '{"a":1}', requestId: "" });
    const sessions = { 0: (await create(stores[0])()).session.sessionId, 1: (await create(stores[1])()).session.sessionId };
    const setData = (replicas: 0 | 1) => () => stores[replicas].setData(TENANT, sessions[replicas], `k${randomUUID().slice(0, 2)}`, '"value"');
    const rows: WaitRow[] = [];
    for (const operation of ["create", "setData"] as const) {
      for (const concurrency of [1, CONCURRENCY]) {
        const pools: Record<0 | 1, Pool> = { 0: { latencies: [], elapsedMs: 0, errors: 0 }, 1: { latencies: [], elapsedMs: 0, errors: 0 } };
        for (let r = 0; r < ROUNDS; r++) {
          const order: (0 | 1)[] = r % 2 === 0 ? [0, 1] : [1, 0];
          for (const replicas of order) {
            await round(operation === "create" ? create(stores[replicas]) : setData(replicas), concurrency, pools[replicas]);
          }
        }
        for (const replicas of [0, 1] as const) {
          const pool = pools[replicas];
          const sorted = pool.latencies.sort((a, b) => a - b);
          const row: WaitRow = {
            operation,
            concurrency,
            replicas,
            calls: sorted.length,
            perSecond: (sorted.length / pool.elapsedMs) * 1000,
            p50Ms: percentile(sorted, 0.5),
            p99Ms: percentile(sorted, 0.99),
            errors: pool.errors,
          };
          rows.push(row);
          log(`${operation} c=${concurrency} WAIT ${replicas}: ${row.perSecond.toFixed(0)}/s p50 ${row.p50Ms.toFixed(2)} ms p99 ${row.p99Ms.toFixed(2)} ms errors ${row.errors}`);
        }
      }
    }
    return { roundMs: ROUND_MS, rounds: ROUNDS, rows };
  } finally {
    await stores[0].dispose();
    await stores[1].dispose();
    await replica.stop();
    await primary.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The rows as a table: each WAIT 1 row with its ratio to the WAIT 0 row of the same operation and concurrency. */
export function renderReplicaWait(report: ReplicaWaitReport): string {
  if (report.error !== undefined) return `Not measured: ${report.error}`;
  const lines = ["| Operation | In flight | WAIT | Calls/s | p50 ms | p99 ms | Throughput vs WAIT 0 |", "|---|---:|---:|---:|---:|---:|---:|"];
  for (const row of report.rows) {
    const base = report.rows.find((r) => r.operation === row.operation && r.concurrency === row.concurrency && r.replicas === 0);
    const ratio = row.replicas === 1 && base !== undefined ? `${(row.perSecond / base.perSecond).toFixed(2)}×` : "";
    lines.push(`| ${row.operation} | ${row.concurrency} | ${row.replicas} | ${row.perSecond.toFixed(0)} | ${row.p50Ms.toFixed(2)} | ${row.p99Ms.toFixed(2)} | ${ratio} |`);
  }
  return lines.join("\n");
}

await runAsBenchMain(
  import.meta.url,
  async (log) => {
    try {
      return await measure(log);
    } catch (error) {
      return { roundMs: ROUND_MS, rounds: ROUNDS, rows: [], error: error instanceof Error ? error.message : String(error) };
    }
  },
  renderReplicaWait,
);
