/**
 * Scale benchmark (issue 10): ListSessions by user at 10k, 100k and 1M live
 * sessions, and expiry lag at 1M live sessions with 1k expirations/s.
 *
 *   node --import tsx bench/scale-bench.ts     # progress lines, then one JSON line (ScaleReport)
 *
 * On a private redis-server, the service in its own process (src/main.ts,
 * production Node flags, WORKERS=1, metadata encryption on). Live sessions
 * are loaded straight through RedisStore (the same scripts a create runs,
 * faster than RPCs): 10k users, 10 data sources, TTLs of 2–3 h. One user
 * ("list-user") always owns the same 100 sessions, so every size lists the
 * same page: only the population around it grows.
 *
 * - ListSessions: the page of list-user (page_size 100) over gRPC with the
 *   generated client, sequential calls, p50/p99, at each size.
 * - Expiry lag at the largest size, against the smallest: probe sessions
 *   come due at 1000/s among the population's data sources; the bench writes
 *   each into Redis with the store's create script 0.5–2 s before its slot
 *   (bench/expiry-schedule.ts), so the rate holds on a loaded machine and the
 *   service only expires and delivers. A second stack (redis-server and
 *   service) holds the smallest population; rounds of probes alternate
 *   between the two (A B B A), so the machine's load hits both alike. A
 *   watcher of EXPIRED events per stack (remote, over h2c) records arrival −
 *   expire_time for every probe (p50/p99/max), and the event's log time −
 *   expire_time, the scheduler's share.
 *
 * Environment: SCALE_BENCH_SIZES (default "10000,100000,1000000"),
 * SCALE_BENCH_EXPIRY_SECONDS (default 4: seconds of probes per round and side),
 * SCALE_BENCH_SERVICE_FLAGS (more Node flags for the services, e.g. --cpu-prof).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runAsBenchMain } from "./child-main.js";
import { waitForServiceReady } from "./service-ready.js";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createSessionClient, EventType, type SessionClient } from "@sessiond/client";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { SessionStore } from "../src/store/store.js";
import { BenchSealer, scheduleExpiries } from "./expiry-schedule.js";
import { fillInProcesses, LIST_USER_SESSIONS } from "./populations.js";
import { freePort, startRedisServer } from "../test/support/redis-server.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const SIZES = (process.env["SCALE_BENCH_SIZES"] || "10000,100000,1000000").split(",").map((s) => Number(s.trim()));
/** Seconds of probes per round and side; rounds alternate between the large and the reference stack. */
const EXPIRY_ROUND_SECONDS = Number(process.env["SCALE_BENCH_EXPIRY_SECONDS"] || "4");
const EXPIRY_ROUNDS = 4;
/** Bound on the service catching up with the load's events before the expiry rounds. */
const CATCH_UP_TIMEOUT_MS = 600_000;
const EXPIRY_RATE = 1000;
const LIST_CALLS = 300;
/** More Node flags for the services, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to see where their time goes. */
const SERVICE_FLAGS = (process.env["SCALE_BENCH_SERVICE_FLAGS"] ?? "").split(" ").filter((f) => f !== "");
/** Processes that fill a population (bench/populations.ts). */
const FILL_PROCESSES = 3;
const KEY_PREFIX = "sd:";

export interface LatencyStats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ScaleReport {
  readonly list: { readonly live: number; readonly returned: number; readonly latency: LatencyStats; readonly loadSeconds: number }[];
  readonly expiry?: ExpiryLag;
  /** The same measurement at the smallest size, in alternating rounds: what the machine alone does to the lag. */
  readonly reference?: ExpiryLag;
  readonly error?: string;
}

export interface ExpiryLag {
    readonly live: number;
    readonly rate: number;
    readonly probes: number;
    readonly events: number;
    readonly failed: number;
    /** Probes created less than 0.5 s before their slot (the bench could not keep the rate). */
    readonly late: number;
    /** Probes created per second while creating (≥ rate: the schedule held). */
    readonly createRate: number;
    /** expire_time → arrival at the remote watcher. */
    readonly lag: LatencyStats;
    /** expire_time → the EXPIRED event's log time: the scheduler's share of the lag. */
    readonly schedulerLag: LatencyStats;
    /** Before the rounds: from writing a marker probe due at once to its EXPIRED at the watcher (the load's backlog), ms. */
    readonly catchUpMs?: number;
    /** p99 of each round, in order. */
    readonly roundP99?: readonly number[];
    /** p99 of the warm-up round before them (not counted), ms. */
    readonly warmUpP99?: number;
}

function stats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}

/** Adds the scale population's sessions from..to-1 (bench/populations.ts), in FILL_PROCESSES processes. */
async function load(stack: Stack, sealer: BenchSealer, to: number): Promise<void> {
  await fillInProcesses({ redisUrl: stack.redis.url, keyPrefix: KEY_PREFIX, population: { name: "scale" }, keys: sealer.keys, from: stack.live, to }, FILL_PROCESSES);
  stack.live = to;
}

async function listLatency(client: SessionClient): Promise<{ returned: number; latency: LatencyStats }> {
  const times: number[] = [];
  let returned = 0;
  for (let i = 0; i < 20; i++) await client.listSessions({ userId: "list-user", pageSize: LIST_USER_SESSIONS });
  for (let i = 0; i < LIST_CALLS; i++) {
    const started = performance.now();
    const res = await client.listSessions({ userId: "list-user", pageSize: LIST_USER_SESSIONS });
    times.push(performance.now() - started);
    returned = res.sessions.length;
  }
  return { returned, latency: stats(times) };
}

/** A watcher of the probes' EXPIRED events on one stack: arrival − expire_time, and the event's log time − expire_time. */
class ProbeWatcher {
  readonly lags: number[] = [];
  readonly scheduler: number[] = [];
  private readonly abort = new AbortController();
  private readonly done: Promise<void>;
  readonly ready: Promise<void>;

  constructor(client: SessionClient) {
    let ready = (): void => {};
    this.ready = Promise.race([new Promise<void>((resolve) => (ready = resolve)), sleep(10_000)]);
    this.done = (async () => {
      for await (const r of client.watchSessions({ userId: "probe", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true }, { signal: this.abort.signal, timeoutMs: 0 })) {
        const e = r.event;
        if (e?.type === EventType.HEARTBEAT) ready();
        if (e === undefined || e.type !== EventType.EXPIRED) continue;
        const expireAt = timestampMs(e.session?.expireTime as Timestamp);
        this.lags.push(Date.now() - expireAt);
        // The event's log time (its cursor's ms, Redis's clock on this machine): when the scheduler expired it.
        this.scheduler.push(Number(e.cursor.split("-")[0]) - expireAt);
      }
    })().catch(() => undefined);
  }

  /**
   * Waits until the service has expired, and delivered, one marker probe due now: then its event reader and
   * scheduler are through the backlog of the load's CREATED events, which the measurement must not include.
   * Returns how long that took (ms); the marker is not counted.
   */
  async current(store: SessionStore, sealer: BenchSealer): Promise<number> {
    const started = Date.now();
    const before = this.lags.length;
    await store.create({ tenant: "default", ...sealer.sealed("default", "{}"), userId: "probe", dataSource: "source-0", accessLevel: "read", ttlMs: 100, requestId: "" });
    while (this.lags.length === before && Date.now() - started < CATCH_UP_TIMEOUT_MS) await sleep(50);
    if (this.lags.length === before) throw new Error(`the service did not expire and announce a marker session within ${CATCH_UP_TIMEOUT_MS / 1000} s`);
    this.clear();
    return Date.now() - started;
  }

  /** Forgets what was recorded (the marker, the warm-up round). */
  clear(): void {
    this.lags.length = 0;
    this.scheduler.length = 0;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }
}

/** A private redis-server with the service on it and the bench's own store and client. */
interface Stack {
  readonly redis: Awaited<ReturnType<typeof startRedisServer>>;
  /** The store as the service sees it (sealed names), for the probes. */
  readonly store: SessionStore;
  readonly client: SessionClient;
  service?: { child: ChildProcess; url: string };
  live: number;
}

async function startStack(sealer: BenchSealer): Promise<Stack> {
  const redis = await startRedisServer();
  const store = sealer.wrap(new RedisStore({ url: redis.url, keyPrefix: KEY_PREFIX, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000 }, commandTimeoutMs: 30_000 }));
  const stack: Stack = { redis, store, client: undefined as unknown as SessionClient, live: 0 };
  const service = await startService(redis.url, sealer.keys);
  return { ...stack, service, client: createSessionClient(service.url, { timeoutMs: 30_000 }) };
}

async function stopStack(stack: Stack): Promise<void> {
  await stack.store.dispose();
  const child = stack.service?.child;
  if (child !== undefined && child.exitCode === null) {
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
  }
  await stack.redis.stop();
}

/** One round of probes on one stack: EXPIRY_RATE per second for EXPIRY_ROUND_SECONDS, created while earlier ones expire. */
async function probeRound(stack: Stack, sealer: BenchSealer, watcher: ProbeWatcher, totals: { probes: number; failed: number; late: number; createRate: number[]; rounds: number[] }): Promise<void> {
  const from = watcher.lags.length;
  const schedule = await scheduleExpiries({
    store: stack.store,
    rate: EXPIRY_RATE,
    seconds: EXPIRY_ROUND_SECONDS,
    leadMs: 2000,
    session: (i) => ({ tenant: "default", ...sealer.sealed("default", '{"probe":true}'), userId: "probe", dataSource: `source-${i % 10}`, accessLevel: "read", requestId: "" }),
  });
  totals.probes += schedule.created;
  totals.failed += schedule.failed;
  totals.late += schedule.late;
  totals.createRate.push(schedule.createRate);
  const deadline = schedule.windowEnd + 15_000;
  while (watcher.lags.length < totals.probes && Date.now() < deadline) await sleep(50);
  totals.rounds.push(stats(watcher.lags.slice(from)).p99);
}

async function startService(redisUrl: string, encryptionKeys: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, ["--max-semi-space-size=64", ...SERVICE_FLAGS, "--import", "tsx", join(ROOT, "src/main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      REDIS_URL: redisUrl,
      KEY_PREFIX,
      ENCRYPTION_KEYS: encryptionKeys,
      AUDIT_LOG: "stdout",
      LOG_LEVEL: "info",
      MAX_SESSIONS_PER_USER: "0",
      SESSION_TTL_MIN: "1s",
      WATCH_HEARTBEAT: "1h",
    },
    stdio: ["ignore", devNull, "inherit"],
  });
  closeSync(devNull);
  const url = `http://127.0.0.1:${port}`;
  await waitForServiceReady(child, url);
  return { child, url };
}

export async function runScaleBench(log: (line: string) => void): Promise<ScaleReport> {
  const list: ScaleReport["list"][number][] = [];
  const sealer = new BenchSealer();
  const stacks: Stack[] = [];
  try {
    // The large population, with ListSessions at each size on the way up.
    const large = await startStack(sealer);
    stacks.push(large);
    for (const size of SIZES) {
      const started = Date.now();
      await load(large, sealer, size);
      const loadSeconds = (Date.now() - started) / 1000;
      const { returned, latency } = await listLatency(large.client);
      list.push({ live: size, returned, latency, loadSeconds });
      log(`ListSessions by user at ${size.toLocaleString("en")} live (loaded in ${loadSeconds.toFixed(0)} s, ${(size / Math.max(1, loadSeconds)).toFixed(0)}/s over the whole size): ${returned} returned, p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms`);
    }
    // The reference: the same service at the smallest size, in rounds alternating with the large one (A B B A ...),
    // so that the machine's load hits both alike and the ratio shows what the population itself costs.
    const small = await startStack(sealer);
    stacks.push(small);
    await load(small, sealer, SIZES[0] ?? 10_000);
    const sides = [large, small].map((stack) => ({ stack, watcher: new ProbeWatcher(stack.client), totals: { probes: 0, failed: 0, late: 0, createRate: [] as number[], rounds: [] as number[] } }));
    await Promise.all(sides.map((side) => side.watcher.ready));
    const catchUpMs = await Promise.all(sides.map((side) => side.watcher.current(side.stack.store, sealer)));
    log(`the services expired a marker session ${catchUpMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(" and ")} after it was written (the load's backlog of events; not measured)`);
    // One round per side before the measured ones, shown but not counted: the first expirations after a start run
    // code neither the services nor this process (the probes' writer and the watchers) has run yet (V8 compiles it
    // while it runs), which is the processes' start, not the population's or the rate's cost.
    const warmUpP99: number[] = [];
    for (const side of sides) {
      const warm = { probes: 0, failed: 0, late: 0, createRate: [] as number[], rounds: [] as number[] };
      await probeRound(side.stack, sealer, side.watcher, warm);
      warmUpP99.push(warm.rounds[0] ?? Number.NaN);
      side.watcher.clear();
    }
    log(`warm-up round (not counted): p99 ${warmUpP99.map((ms) => `${ms} ms`).join(" and ")}`);
    for (let round = 0; round < EXPIRY_ROUNDS; round++) {
      for (const side of round % 2 === 0 ? sides : [...sides].reverse()) await probeRound(side.stack, sealer, side.watcher, side.totals);
    }
    const [expiry, reference] = await Promise.all(
      sides.map(async ({ stack, watcher, totals }) => {
        await watcher.stop();
        return {
          live: stack.live,
          rate: EXPIRY_RATE,
          probes: totals.probes,
          events: watcher.lags.length,
          failed: totals.failed,
          late: totals.late,
          createRate: Math.min(...totals.createRate),
          lag: stats(watcher.lags),
          schedulerLag: stats(watcher.scheduler),
          catchUpMs: catchUpMs[sides.findIndex((side) => side.stack === stack)] ?? Number.NaN,
          warmUpP99: warmUpP99[sides.findIndex((side) => side.stack === stack)] ?? Number.NaN,
          roundP99: totals.rounds,
        };
      }),
    );
    for (const e of [expiry, reference]) {
      if (e === undefined) continue;
      log(
        `expiry lag at ${e.live.toLocaleString("en")} live, ${EXPIRY_RATE}/s (probes written at ≥ ${e.createRate.toFixed(0)}/s, ${e.late} late): ` +
          `p50 ${e.lag.p50} ms, p99 ${e.lag.p99} ms, max ${e.lag.max} ms (${e.events}/${e.probes} events); scheduler's share p50 ${e.schedulerLag.p50} ms, p99 ${e.schedulerLag.p99} ms; p99 per round ${e.roundP99?.join(", ")} ms (warm-up round ${e.warmUpP99} ms, not counted)`,
      );
    }
    return expiry === undefined || reference === undefined ? { list } : { list, expiry, reference };
  } catch (error) {
    return { list, error: error instanceof Error ? error.message : String(error) };
  } finally {
    await Promise.all(stacks.map(stopStack));
  }
}

export function renderScale(report: ScaleReport): string {
  const lines = ["## ListSessions and expiry at scale (bench/scale-bench.ts)", ""];
  lines.push(
    "Method: private redis-server, sessiond in its own process (WORKERS=1, production flags, encryption on). Live sessions written through " +
      "RedisStore (the create script, many calls in flight on one connection, metadata sealed as the service seals it) over 10k users; one user always owns the same 100 sessions and its page (page_size 100) is listed " +
      `${LIST_CALLS} times in a row with the generated gRPC client at each size. Expiry: probe sessions come due at ${EXPIRY_RATE}/s, spread over the population's 10 data sources; ` +
      "the bench writes each straight into Redis with the store's create script 0.5–2 s before its slot (bench/expiry-schedule.ts), so creates and expiries overlap and the rate is the schedule's, " +
      "not what an RPC client keeps up with; the service expires them. A second stack (its own redis-server and service) holds the smallest population: " +
      `${EXPIRY_ROUNDS} rounds of ${EXPIRY_ROUND_SECONDS} s per side alternate between the two (A B B A), so the machine's load hits both alike and the ratio shows what the population costs. ` +
      "Before the rounds, each service must expire and announce one marker probe (due at once), so that its event reader and scheduler are through the backlog of the load's CREATED events: that time is shown, not measured. " +
      "Then one warm-up round per side, shown but not counted: the first expirations after a start run code that neither the service nor the bench's own process (the probes' writer and the watcher) has run yet. " +
      "Lag = arrival of EXPIRED at a remote watcher − expire_time; the scheduler's share = the EXPIRED event's log time (its cursor) − expire_time.",
    "",
  );
  if (report.error !== undefined) lines.push(`Failed: ${report.error}`, "");
  lines.push("| live sessions | returned | loaded in s | ListSessions p50 ms | p99 ms | max ms |", "|---|---|---|---|---|---|");
  for (const row of report.list) lines.push(`| ${row.live.toLocaleString("en")} | ${row.returned} | ${row.loadSeconds.toFixed(0)} | ${row.latency.p50.toFixed(2)} | ${row.latency.p99.toFixed(2)} | ${row.latency.max.toFixed(2)} |`);
  lines.push("");
  const rows = [report.expiry, report.reference].filter((e): e is ExpiryLag => e !== undefined);
  if (rows.length > 0) {
    lines.push(
      "| live sessions | expirations/s | events/probes | lag p50 ms | p99 ms | max ms | p99 per round, ms | warm-up round p99 ms (not counted) | scheduler's share p50 / p99 ms | backlog before the rounds, s | goal p99 < 50 ms |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const e of rows) {
      lines.push(
        `| ${e.live.toLocaleString("en")} | ${e.rate} (probes written at ≥ ${e.createRate.toFixed(0)}/s, ${e.late} late) | ${e.events}/${e.probes} | ${e.lag.p50} | ${e.lag.p99} | ${e.lag.max} | ${e.roundP99?.join(", ") ?? "-"} | ${e.warmUpP99 ?? "-"} | ${e.schedulerLag.p50} / ${e.schedulerLag.p99} | ${e.catchUpMs === undefined ? "-" : (e.catchUpMs / 1000).toFixed(1)} | ${expiryPass(e) ? "yes" : "**no**"} |`,
      );
    }
    lines.push("");
  }
  return lines.join("\n");
}

/** The goal: p99 < 50 ms, every probe's event, on the schedule. */
export function expiryPass(e: ExpiryLag): boolean {
  return e.lag.p99 < 50 && e.events === e.probes && e.late === 0;
}

await runAsBenchMain(import.meta.url, runScaleBench, renderScale);
