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
 * - Expiry lag at the largest size: probe sessions come due at 1000/s for
 *   SCALE_BENCH_EXPIRY_SECONDS (default 10), among the background's data
 *   sources; the bench writes each into Redis with the store's create script
 *   0.5–5 s before its slot (bench/expiry-schedule.ts), so the bench keeps the
 *   rate on a loaded machine and the service only expires and delivers. A
 *   watcher of EXPIRED events (remote, over h2c) records arrival − expire_time
 *   for every probe (p50/p99/max), and the event's log time − expire_time,
 *   the scheduler's share.
 *
 * Environment: SCALE_BENCH_SIZES (default "10000,100000,1000000").
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runAsBenchMain } from "./child-main.js";
import { setTimeout as sleep } from "node:timers/promises";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createSessionClient, EventType, type SessionClient } from "@sessiond/client";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { BenchSealer, fill, scheduleExpiries } from "./expiry-schedule.js";
import { freePort, startRedisServer } from "../test/support/redis-server.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const SIZES = (process.env["SCALE_BENCH_SIZES"] || "10000,100000,1000000").split(",").map((s) => Number(s.trim()));
const EXPIRY_SECONDS = Number(process.env["SCALE_BENCH_EXPIRY_SECONDS"] || "10");
const EXPIRY_RATE = 1000;
const LIST_CALLS = 300;
const LIST_USER_SESSIONS = 100;
const KEY_PREFIX = "sd:";

export interface LatencyStats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ScaleReport {
  readonly list: { readonly live: number; readonly returned: number; readonly latency: LatencyStats; readonly loadSeconds: number }[];
  readonly expiry?: {
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
  };
  readonly error?: string;
}

function stats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}

/** Adds sessions through RedisStore until `from` + added = `to`; session i belongs to list-user for i < LIST_USER_SESSIONS. */
async function load(store: RedisStore, sealer: BenchSealer, from: number, to: number): Promise<void> {
  await fill(store, from, to, (i) => ({
    tenant: "default",
    ...sealer.sealed("default", JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 })),
    userId: i < LIST_USER_SESSIONS ? "list-user" : `user-${String(i % 10_000).padStart(5, "0")}`,
    dataSource: `source-${i % 10}`,
    accessLevel: i % 3 === 0 ? "write" : "read",
    ttlMs: 7_200_000 + (i % 3600) * 1000,
    requestId: "",
  }));
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

/**
 * Probes written by the bench straight into Redis (bench/expiry-schedule.ts), due at EXPIRY_RATE per second
 * among the background population's data sources; one remote watcher of EXPIRED events.
 */
async function expiryLag(client: SessionClient, store: RedisStore, sealer: BenchSealer, live: number): Promise<NonNullable<ScaleReport["expiry"]>> {
  const lags: number[] = [];
  const scheduler: number[] = [];
  const abort = new AbortController();
  let ready = (): void => {};
  const watching = new Promise<void>((resolve) => (ready = resolve));
  const watch = (async () => {
    for await (const r of client.watchSessions({ userId: "probe", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
      const e = r.event;
      if (e?.type === EventType.HEARTBEAT) ready();
      if (e === undefined || e.type !== EventType.EXPIRED) continue;
      const expireAt = timestampMs(e.session?.expireTime as Timestamp);
      lags.push(Date.now() - expireAt);
      // The event's log time (its cursor's ms, Redis's clock on this machine): when the scheduler expired it.
      scheduler.push(Number(e.cursor.split("-")[0]) - expireAt);
    }
  })().catch(() => undefined);
  await Promise.race([watching, sleep(10_000)]);
  const schedule = await scheduleExpiries({
    store,
    rate: EXPIRY_RATE,
    seconds: EXPIRY_SECONDS,
    session: (i) => ({ tenant: "default", ...sealer.sealed("default", '{"probe":true}'), userId: "probe", dataSource: `source-${i % 10}`, accessLevel: "read", requestId: "" }),
  });
  const deadline = schedule.windowEnd + 15_000;
  while (lags.length < schedule.created && Date.now() < deadline) await sleep(50);
  abort.abort();
  await watch;
  return {
    live,
    rate: EXPIRY_RATE,
    probes: schedule.created,
    events: lags.length,
    failed: schedule.failed,
    late: schedule.late,
    createRate: schedule.createRate,
    lag: stats(lags),
    schedulerLag: stats(scheduler),
  };
}

async function startService(redisUrl: string, encryptionKeys: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, ["--max-semi-space-size=64", "--import", "tsx", join(ROOT, "src/main.ts")], {
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
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) return { child, url };
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error("the service did not become ready");
    await sleep(200);
  }
}

export async function runScaleBench(log: (line: string) => void): Promise<ScaleReport> {
  const redis = await startRedisServer();
  const list: ScaleReport["list"][number][] = [];
  let service: { child: ChildProcess; url: string } | undefined;
  const sealer = new BenchSealer();
  const store = new RedisStore({ url: redis.url, keyPrefix: KEY_PREFIX, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000 }, commandTimeoutMs: 30_000 });
  try {
    service = await startService(redis.url, sealer.keys);
    const client = createSessionClient(service.url, { timeoutMs: 30_000 });
    let loaded = 0;
    for (const size of SIZES) {
      const started = Date.now();
      await load(store, sealer, loaded, size);
      loaded = size;
      const loadSeconds = (Date.now() - started) / 1000;
      const { returned, latency } = await listLatency(client);
      list.push({ live: size, returned, latency, loadSeconds });
      log(`ListSessions by user at ${size.toLocaleString("en")} live (loaded in ${loadSeconds.toFixed(0)} s): ${returned} returned, p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms`);
    }
    const expiry = await expiryLag(client, store, sealer, loaded);
    log(
      `expiry lag at ${loaded.toLocaleString("en")} live, ${EXPIRY_RATE}/s (probes created at ${expiry.createRate.toFixed(0)}/s, ${expiry.late} late): ` +
        `p50 ${expiry.lag.p50} ms, p99 ${expiry.lag.p99} ms, max ${expiry.lag.max} ms (${expiry.events}/${expiry.probes} events); scheduler's share p50 ${expiry.schedulerLag.p50} ms, p99 ${expiry.schedulerLag.p99} ms`,
    );
    return { list, expiry };
  } catch (error) {
    return { list, error: error instanceof Error ? error.message : String(error) };
  } finally {
    await store.dispose();
    if (service !== undefined) {
      const exited = new Promise((resolve) => service?.child.once("exit", resolve));
      service.child.kill("SIGTERM");
      const timer = setTimeout(() => service?.child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await redis.stop();
  }
}

export function renderScale(report: ScaleReport): string {
  const lines = ["## ListSessions and expiry at scale (bench/scale-bench.ts)", ""];
  lines.push(
    "Method: private redis-server, sessiond in its own process (WORKERS=1, production flags, encryption on). Live sessions loaded through " +
      "RedisStore (the create script) over 10k users; one user always owns the same 100 sessions and its page (page_size 100) is listed " +
      `${LIST_CALLS} times in a row with the generated gRPC client at each size. Expiry: on top of the largest population, probe sessions come due at ${EXPIRY_RATE}/s for ` +
      `${EXPIRY_SECONDS} s, spread over the same 10 data sources; the bench writes each straight into Redis with the store's create script 0.5–5 s before its slot ` +
      "(so the rate is the bench's schedule, not what an RPC client keeps up with), and the service expires them; lag = arrival of EXPIRED at a remote watcher − expire_time; " +
      "the scheduler's share = the EXPIRED event's log time (its cursor) − expire_time.",
    "",
  );
  if (report.error !== undefined) lines.push(`Failed: ${report.error}`, "");
  lines.push("| live sessions | returned | ListSessions p50 ms | p99 ms | max ms |", "|---|---|---|---|---|");
  for (const row of report.list) lines.push(`| ${row.live.toLocaleString("en")} | ${row.returned} | ${row.latency.p50.toFixed(2)} | ${row.latency.p99.toFixed(2)} | ${row.latency.max.toFixed(2)} |`);
  lines.push("");
  if (report.expiry !== undefined) {
    const e = report.expiry;
    const pass = e.lag.p99 < 50 && e.events === e.probes && e.late === 0;
    lines.push(
      "| live sessions | expirations/s | events/probes | lag p50 ms | p99 ms | max ms | scheduler's share p50 / p99 ms | goal p99 < 50 ms |",
      "|---|---|---|---|---|---|---|---|",
      `| ${e.live.toLocaleString("en")} | ${e.rate} (probes written at ${e.createRate.toFixed(0)}/s, ${e.late} late) | ${e.events}/${e.probes} | ${e.lag.p50} | ${e.lag.p99} | ${e.lag.max} | ${e.schedulerLag.p50} / ${e.schedulerLag.p99} | ${pass ? "yes" : "**no**"} |`,
      "",
    );
  }
  return lines.join("\n");
}

await runAsBenchMain(import.meta.url, runScaleBench, renderScale);
