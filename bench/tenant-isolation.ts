/**
 * One tenant's size must not show in another tenant's latency (issue 13):
 * on a private redis-server, through RedisStore, a neighbour tenant keeps
 * listing its sessions unfiltered (page size 1000) and by data source while a
 * "victim" tenant, in a process of its own, calls GetSession, ListSessions by
 * user (page 100) and GetSessionMetrics' counters read. Two neighbours exist,
 * one at 1,000 sessions over 100 data sources and one at SESSIONS over
 * SOURCES (default 1M / 100k, the issue's size); rounds alternate between
 * them (A B B A ...), so the machine's drift hits both alike, and the
 * victim's p99 over each side's rounds is compared. Every call's Redis work
 * is bounded by its page and filter, so the ratio should stay near 1.
 *
 * The victim's load runs in its own process (this file with --victim) so that
 * what it measures is Redis's answer, not its turn on an event loop busy
 * decoding the neighbour's pages. The neighbours are filled with many store
 * calls in flight (pipelined on one connection), the create script itself.
 *
 *   npx tsx bench/tenant-isolation.ts [sessions] [sources]
 *
 * Prints a few lines for people, then one JSON line (IsolationReport) for bench/run.ts.
 */
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { fill } from "./expiry-schedule.js";
import { fillInProcesses } from "./populations.js";

const SMALL_SESSIONS = 1000;
const SMALL_SOURCES = 100;
const MEASURE_MS = Number(process.env["BENCH_ISOLATION_MEASURE_MS"] ?? 12_000);
const SMALL = "neighbour-small";
const LARGE = "neighbour-large";
const ROUNDS = 6;
const VICTIM = "victim";
const VICTIM_SESSIONS = 300;
/** Processes that fill the large neighbour (bench/populations.ts). */
const FILL_PROCESSES = 3;
/** The victim's operations, as the RPCs they stand for. */
const VICTIM_OPS = ["GetSession", "ListSessions", "GetSessionMetrics"] as const;
type VictimOp = (typeof VICTIM_OPS)[number];

export interface PhaseLatency {
  readonly victimOps: number;
  readonly victimP50Ms: number;
  readonly victimP99Ms: number;
  /** p99 of each victim operation. */
  readonly victimP99ByOp: Readonly<Record<VictimOp, number>>;
  readonly neighbourLists: number;
  readonly neighbourListP50Ms: number;
}

export interface IsolationReport {
  readonly sessions: number;
  readonly sources: number;
  readonly fillSeconds: number;
  readonly fillRate: number;
  readonly measureSeconds: number;
  readonly small: PhaseLatency;
  readonly large: PhaseLatency;
  /** large.victimP99Ms / small.victimP99Ms */
  readonly p99Ratio: number;
  /** Wall time of the whole script, s. */
  readonly seconds: number;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

function openStore(url: string, prefix: string): RedisStore {
  return new RedisStore({ url, keyPrefix: prefix, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 300_000 }, commandTimeoutMs: 30_000 });
}

type VictimSamples = Record<VictimOp, number[]>;

// ---------------------------------------------------------------- the victim (child process)

if (process.argv[2] === "--victim") {
  const store = openStore(process.argv[3] ?? "", process.argv[4] ?? "");
  const sessionIds = (process.argv[5] ?? "").split(",");
  process.on("message", (msg: { type: "measure"; ms: number } | { type: "exit" }) => {
    if (msg.type === "exit") {
      void store.dispose().then(() => process.exit(0));
      return;
    }
    const until = Date.now() + msg.ms;
    const samples: VictimSamples = { GetSession: [], ListSessions: [], GetSessionMetrics: [] };
    const reader = async (offset: number): Promise<void> => {
      for (let i = offset; Date.now() < until; i++) {
        const op = VICTIM_OPS[i % VICTIM_OPS.length] as VictimOp;
        const t0 = performance.now();
        if (op === "GetSession") await store.get(VICTIM, sessionIds[i % sessionIds.length] ?? "", { touch: false, includeEnded: false });
        else if (op === "ListSessions") await store.list(VICTIM, { userId: `v${i % 3}` }, 100);
        else await store.counters(VICTIM);
        samples[op].push(performance.now() - t0);
      }
    };
    void Promise.all([0, 1, 2, 3].map(reader)).then(() => process.send?.({ type: "samples", samples }));
  });
  process.send?.({ type: "ready" });
}

// ---------------------------------------------------------------- the runner

async function main(): Promise<void> {
  const sessions = Number(process.argv[2] ?? 1_000_000);
  const sources = Number(process.argv[3] ?? 100_000);
  const began = Date.now();
  const server = await startRedisServer();
  const prefix = "iso:";
  const store = openStore(server.url, prefix);
  const victim = { child: undefined as ReturnType<typeof fork> | undefined };
  try {
    await store.ping();
    const victimIds: string[] = [];
    await fill(store, 0, VICTIM_SESSIONS, (i) => ({ tenant: VICTIM, userId: `v${i % 3}`, dataSource: `v${i % 5}`, accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "" }));
    for (const s of (await store.list(VICTIM, {}, VICTIM_SESSIONS)).sessions) victimIds.push(s.sessionId);
    await fillInProcesses({ redisUrl: server.url, keyPrefix: prefix, population: { name: "neighbour", tenant: SMALL, sources: SMALL_SOURCES }, from: 0, to: SMALL_SESSIONS }, 1);
    const started = Date.now();
    await fillInProcesses({ redisUrl: server.url, keyPrefix: prefix, population: { name: "neighbour", tenant: LARGE, sources }, from: 0, to: sessions }, FILL_PROCESSES);
    const fillSeconds = (Date.now() - started) / 1000;
    console.log(`filled the large neighbour to ${sessions.toLocaleString("en")} sessions / ${sources.toLocaleString("en")} sources in ${fillSeconds.toFixed(0)} s (${(sessions / fillSeconds).toFixed(0)}/s)`);

    const child = fork(fileURLToPath(import.meta.url), ["--victim", server.url, prefix, victimIds.join(",")], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    victim.child = child;
    await new Promise<void>((resolve, reject) => {
      child.once("message", () => resolve());
      child.once("exit", (code) => reject(new Error(`the victim process exited (${code})`)));
    });
    const measureVictim = (ms: number): Promise<VictimSamples> =>
      new Promise((resolve) => {
        child.once("message", (m: { samples: VictimSamples }) => resolve(m.samples));
        child.send({ type: "measure", ms });
      });

    const sides = { small: { victim: [] as VictimSamples[], lists: [] as number[] }, large: { victim: [] as VictimSamples[], lists: [] as number[] } };
    const roundMs = MEASURE_MS / ROUNDS;
    for (let round = 0; round < ROUNDS; round++) {
      for (const large of round % 2 === 0 ? [false, true] : [true, false]) {
        const side = large ? sides.large : sides.small;
        const tenant = large ? LARGE : SMALL;
        const count = large ? sources : SMALL_SOURCES;
        const until = Date.now() + roundMs;
        const loop = async (): Promise<void> => {
          for (let i = 0; Date.now() < until; i++) {
            const t0 = performance.now();
            await store.list(tenant, {}, 1000);
            side.lists.push(performance.now() - t0);
            await store.list(tenant, { dataSource: `source-${(i * 7919) % count}` }, 100);
          }
        };
        const [samples] = await Promise.all([measureVictim(roundMs), loop(), loop()]);
        side.victim.push(samples);
      }
    }
    const summary = ({ victim: rounds, lists }: { victim: VictimSamples[]; lists: number[] }): PhaseLatency => {
      const byOp = Object.fromEntries(VICTIM_OPS.map((op) => [op, rounds.flatMap((r) => r[op]).sort((a, b) => a - b)])) as VictimSamples;
      const all = VICTIM_OPS.flatMap((op) => byOp[op]).sort((a, b) => a - b);
      lists.sort((a, b) => a - b);
      return {
        victimOps: all.length,
        victimP50Ms: quantile(all, 0.5),
        victimP99Ms: quantile(all, 0.99),
        victimP99ByOp: Object.fromEntries(VICTIM_OPS.map((op) => [op, quantile(byOp[op], 0.99)])) as Record<VictimOp, number>,
        neighbourLists: lists.length,
        neighbourListP50Ms: quantile(lists, 0.5),
      };
    };
    const small = summary(sides.small);
    const large = summary(sides.large);
    console.log(`neighbour at ${SMALL_SESSIONS} / ${SMALL_SOURCES}: victim p99 ${small.victimP99Ms.toFixed(2)} ms (${small.victimOps} ops), neighbour list p50 ${small.neighbourListP50Ms.toFixed(1)} ms`);
    console.log(`neighbour at ${sessions} / ${sources}: victim p99 ${large.victimP99Ms.toFixed(2)} ms (${large.victimOps} ops), neighbour list p50 ${large.neighbourListP50Ms.toFixed(1)} ms`);
    const report: IsolationReport = {
      sessions,
      sources,
      fillSeconds,
      fillRate: sessions / fillSeconds,
      measureSeconds: MEASURE_MS / 1000,
      small,
      large,
      p99Ratio: large.victimP99Ms / small.victimP99Ms,
      seconds: (Date.now() - began) / 1000,
    };
    console.log(JSON.stringify(report));
  } finally {
    const child = victim.child;
    if (child !== undefined && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send({ type: "exit" });
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    await store.dispose();
    await server.stop();
  }
}

if (process.argv[2] !== "--victim") await main();
