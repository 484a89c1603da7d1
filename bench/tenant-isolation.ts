/**
 * One tenant's size must not show in another tenant's latency (issue 13):
 * on a private redis-server, through RedisStore, a "neighbour" tenant keeps
 * listing its sessions unfiltered (page size 1000) and by data source while a
 * "victim" tenant reads its metrics and a session; the victim's p99 is
 * measured twice under the same load: with the neighbour at 1,000 sessions
 * over 100 data sources, then at SESSIONS over SOURCES. Every call's Redis
 * work is bounded by its page and filter, so the ratio should stay near 1.
 *
 *   npx tsx bench/tenant-isolation.ts [sessions] [sources]
 *
 * Prints a few lines for people, then one JSON line (IsolationReport) for bench/run.ts.
 */
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer } from "../test/support/redis-server.js";

const SESSIONS = Number(process.argv[2] ?? 200_000);
const SOURCES = Number(process.argv[3] ?? 20_000);
const SMALL_SESSIONS = 1000;
const SMALL_SOURCES = 100;
const MEASURE_MS = Number(process.env["BENCH_ISOLATION_MEASURE_MS"] ?? 8000);
const FILL_CONCURRENCY = 200;
const NEIGHBOUR = "neighbour";
const VICTIM = "victim";

export interface PhaseLatency {
  readonly victimOps: number;
  readonly victimP50Ms: number;
  readonly victimP99Ms: number;
  readonly neighbourLists: number;
  readonly neighbourListP50Ms: number;
}

export interface IsolationReport {
  readonly sessions: number;
  readonly sources: number;
  readonly fillSeconds: number;
  readonly small: PhaseLatency;
  readonly large: PhaseLatency;
  /** large.victimP99Ms / small.victimP99Ms */
  readonly p99Ratio: number;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

const server = await startRedisServer();
const store = new RedisStore({
  url: server.url,
  keyPrefix: "iso:",
  limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 300_000 },
  commandTimeoutMs: 10_000,
});

async function fill(from: number, to: number, sources: number): Promise<void> {
  let next = from;
  const worker = async (): Promise<void> => {
    while (next < to) {
      const i = next++;
      await store.create({
        tenant: NEIGHBOUR,
        userId: `user-${i % 50_000}`,
        dataSource: `source-${i % sources}`,
        accessLevel: "read",
        ttlMs: 3_600_000 + (i % 1000) * 1000,
        metadata: '{"client":"web","region":"eu-west-1"}',
        requestId: "",
      });
    }
  };
  await Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker));
}

async function measure(sources: number, victimSession: string): Promise<PhaseLatency> {
  const until = Date.now() + MEASURE_MS;
  const victim: number[] = [];
  const lists: number[] = [];
  const neighbour = async (): Promise<void> => {
    for (let i = 0; Date.now() < until; i++) {
      const t0 = performance.now();
      await store.list(NEIGHBOUR, {}, 1000);
      lists.push(performance.now() - t0);
      await store.list(NEIGHBOUR, { dataSource: `source-${i % sources}` }, 100);
    }
  };
  const reader = async (): Promise<void> => {
    for (let i = 0; Date.now() < until; i++) {
      const t0 = performance.now();
      if (i % 2 === 0) await store.counters(VICTIM);
      else await store.get(VICTIM, victimSession, { touch: false, includeEnded: false });
      victim.push(performance.now() - t0);
    }
  };
  await Promise.all([neighbour(), neighbour(), reader(), reader(), reader(), reader()]);
  victim.sort((a, b) => a - b);
  lists.sort((a, b) => a - b);
  return {
    victimOps: victim.length,
    victimP50Ms: quantile(victim, 0.5),
    victimP99Ms: quantile(victim, 0.99),
    neighbourLists: lists.length,
    neighbourListP50Ms: quantile(lists, 0.5),
  };
}

try {
  await store.ping();
  const victimSession = (
    await store.create({ tenant: VICTIM, userId: "v", dataSource: "v", accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "" })
  ).session.sessionId;
  await fill(0, SMALL_SESSIONS, SMALL_SOURCES);
  const small = await measure(SMALL_SOURCES, victimSession);
  console.log(`neighbour at ${SMALL_SESSIONS} sessions / ${SMALL_SOURCES} sources: victim p99 ${small.victimP99Ms.toFixed(2)} ms (${small.victimOps} ops)`);
  const started = Date.now();
  await fill(SMALL_SESSIONS, SESSIONS, SOURCES);
  const fillSeconds = (Date.now() - started) / 1000;
  console.log(`filled to ${SESSIONS} sessions / ${SOURCES} sources in ${fillSeconds.toFixed(0)} s`);
  const large = await measure(SOURCES, victimSession);
  console.log(`neighbour at ${SESSIONS} sessions / ${SOURCES} sources: victim p99 ${large.victimP99Ms.toFixed(2)} ms (${large.victimOps} ops)`);
  const report: IsolationReport = { sessions: SESSIONS, sources: SOURCES, fillSeconds, small, large, p99Ratio: large.victimP99Ms / small.victimP99Ms };
  console.log(JSON.stringify(report));
} finally {
  await store.dispose();
  await server.stop();
}
