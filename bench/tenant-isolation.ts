/**
 * One tenant's size must not show in another tenant's latency (issue 13):
 * on a private redis-server, through RedisStore, a neighbour tenant keeps
 * listing its sessions unfiltered (page size 1000) and by data source while a
 * "victim" tenant reads its metrics and a session. Two neighbours exist, one
 * at 1,000 sessions over 100 data sources and one at SESSIONS over SOURCES;
 * rounds alternate between them (A B B A ...), so the machine's drift hits
 * both alike, and the victim's p99 over each side's rounds is compared. Every
 * call's Redis work is bounded by its page and filter, so the ratio should
 * stay near 1.
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
const SMALL = "neighbour-small";
const LARGE = "neighbour-large";
const ROUNDS = 6;
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

async function fill(tenant: string, from: number, to: number, sources: number): Promise<void> {
  let next = from;
  const worker = async (): Promise<void> => {
    while (next < to) {
      const i = next++;
      await store.create({
        tenant,
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

interface Samples {
  readonly victim: number[];
  readonly lists: number[];
}

async function measure(neighbourTenant: string, sources: number, victimSession: string, ms: number, into: Samples): Promise<void> {
  const until = Date.now() + ms;
  const { victim, lists } = into;
  const neighbour = async (): Promise<void> => {
    for (let i = 0; Date.now() < until; i++) {
      const t0 = performance.now();
      await store.list(neighbourTenant, {}, 1000);
      lists.push(performance.now() - t0);
      await store.list(neighbourTenant, { dataSource: `source-${i % sources}` }, 100);
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
}

function summary({ victim, lists }: Samples): PhaseLatency {
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
  await fill(SMALL, 0, SMALL_SESSIONS, SMALL_SOURCES);
  const started = Date.now();
  await fill(LARGE, 0, SESSIONS, SOURCES);
  const fillSeconds = (Date.now() - started) / 1000;
  console.log(`filled the large neighbour to ${SESSIONS} sessions / ${SOURCES} sources in ${fillSeconds.toFixed(0)} s`);
  const smallSamples: Samples = { victim: [], lists: [] };
  const largeSamples: Samples = { victim: [], lists: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? [false, true] : [true, false];
    for (const large of order) {
      if (large) await measure(LARGE, SOURCES, victimSession, MEASURE_MS / ROUNDS, largeSamples);
      else await measure(SMALL, SMALL_SOURCES, victimSession, MEASURE_MS / ROUNDS, smallSamples);
    }
  }
  const small = summary(smallSamples);
  const large = summary(largeSamples);
  console.log(`neighbour at ${SMALL_SESSIONS} / ${SMALL_SOURCES}: victim p99 ${small.victimP99Ms.toFixed(2)} ms (${small.victimOps} ops)`);
  console.log(`neighbour at ${SESSIONS} / ${SOURCES}: victim p99 ${large.victimP99Ms.toFixed(2)} ms (${large.victimOps} ops)`);
  const report: IsolationReport = { sessions: SESSIONS, sources: SOURCES, fillSeconds, small, large, p99Ratio: large.victimP99Ms / small.victimP99Ms };
  console.log(JSON.stringify(report));
} finally {
  await store.dispose();
  await server.stop();
}
