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
 * - Expiry lag at the largest size: probe sessions are created at 1000/s with
 *   a 2 s TTL for SCALE_BENCH_EXPIRY_SECONDS (default 10), so they come due
 *   at 1000/s; a watcher of EXPIRED events (remote, over h2c) records
 *   arrival − expire_time for every probe: p50/p99/max.
 *
 * Environment: SCALE_BENCH_SIZES (default "10000,100000,1000000").
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runAsBenchMain } from "./child-main.js";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs, timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { createSessionClient, EventType, type SessionClient } from "@sessiond/client";
import { RedisStore } from "../src/store/redis/redis-store.js";
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
  readonly expiry?: { readonly live: number; readonly rate: number; readonly probes: number; readonly events: number; readonly failed: number; readonly lag: LatencyStats; readonly createSeconds: number };
  readonly error?: string;
}

function stats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}

/** Adds sessions through RedisStore until `from` + added = `to`; session i belongs to list-user for i < LIST_USER_SESSIONS. */
async function load(store: RedisStore, from: number, to: number): Promise<void> {
  let next = from;
  const worker = async (): Promise<void> => {
    while (next < to) {
      const i = next++;
      await store.create({
        tenant: "default",
        userId: i < LIST_USER_SESSIONS ? "list-user" : `user-${String(i % 10_000).padStart(5, "0")}`,
        dataSource: `source-${i % 10}`,
        accessLevel: i % 3 === 0 ? "write" : "read",
        ttlMs: 7_200_000 + (i % 3600) * 1000,
        metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }),
        requestId: "",
      });
    }
  };
  await Promise.all(Array.from({ length: 128 }, worker));
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

async function expiryLag(client: SessionClient, live: number): Promise<NonNullable<ScaleReport["expiry"]>> {
  const lags: number[] = [];
  const abort = new AbortController();
  let ready = (): void => {};
  const watching = new Promise<void>((resolve) => (ready = resolve));
  const watch = (async () => {
    for await (const r of client.watchSessions({ userId: "probe", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
      const e = r.event;
      if (e?.type === EventType.HEARTBEAT) ready();
      if (e === undefined || e.type !== EventType.EXPIRED) continue;
      lags.push(Date.now() - timestampMs(e.session?.expireTime as Timestamp));
    }
  })().catch(() => undefined);
  await Promise.race([watching, sleep(10_000)]);
  const total = EXPIRY_RATE * EXPIRY_SECONDS;
  const started = Date.now();
  let sent = 0;
  let created = 0;
  let failed = 0;
  const inflight = new Set<Promise<void>>();
  while (sent < total) {
    const due = Math.floor(((Date.now() - started) / 1000) * EXPIRY_RATE);
    while (sent < Math.min(due, total) && inflight.size < 256) {
      sent += 1;
      const p = client
        .createSession({ userId: "probe", dataSource: "probe", ttl: durationFromMs(2000) })
        .then(() => void (created += 1))
        .catch(() => void (failed += 1))
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await sleep(2);
  }
  await Promise.all(inflight);
  const createSeconds = (Date.now() - started) / 1000;
  const deadline = Date.now() + 2000 + 15_000;
  while (lags.length < created && Date.now() < deadline) await sleep(50);
  abort.abort();
  await watch;
  return { live, rate: EXPIRY_RATE, probes: created, events: lags.length, failed, lag: stats(lags), createSeconds };
}

async function startService(redisUrl: string): Promise<{ child: ChildProcess; url: string }> {
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
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString("base64")}`,
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
  const store = new RedisStore({ url: redis.url, keyPrefix: KEY_PREFIX, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000 }, commandTimeoutMs: 30_000 });
  try {
    service = await startService(redis.url);
    const client = createSessionClient(service.url, { timeoutMs: 30_000 });
    let loaded = 0;
    for (const size of SIZES) {
      const started = Date.now();
      await load(store, loaded, size);
      loaded = size;
      const loadSeconds = (Date.now() - started) / 1000;
      const { returned, latency } = await listLatency(client);
      list.push({ live: size, returned, latency, loadSeconds });
      log(`ListSessions by user at ${size.toLocaleString("en")} live (loaded in ${loadSeconds.toFixed(0)} s): ${returned} returned, p50 ${latency.p50.toFixed(2)} ms, p99 ${latency.p99.toFixed(2)} ms`);
    }
    const expiry = await expiryLag(client, loaded);
    log(`expiry lag at ${loaded.toLocaleString("en")} live, ${EXPIRY_RATE}/s: p50 ${expiry.lag.p50} ms, p99 ${expiry.lag.p99} ms, max ${expiry.lag.max} ms (${expiry.events}/${expiry.probes} events)`);
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
      `${LIST_CALLS} times in a row with the generated gRPC client at each size. Expiry: probes created at ${EXPIRY_RATE}/s with a 2 s TTL for ` +
      `${EXPIRY_SECONDS} s on top of the largest population; lag = arrival of EXPIRED at a remote watcher − expire_time.`,
    "",
  );
  if (report.error !== undefined) lines.push(`Failed: ${report.error}`, "");
  lines.push("| live sessions | returned | ListSessions p50 ms | p99 ms | max ms |", "|---|---|---|---|---|");
  for (const row of report.list) lines.push(`| ${row.live.toLocaleString("en")} | ${row.returned} | ${row.latency.p50.toFixed(2)} | ${row.latency.p99.toFixed(2)} | ${row.latency.max.toFixed(2)} |`);
  lines.push("");
  if (report.expiry !== undefined) {
    const e = report.expiry;
    const pass = e.lag.p99 < 50 && e.events === e.probes;
    lines.push(
      "| live sessions | expirations/s | events/probes | lag p50 ms | p99 ms | max ms | goal p99 < 50 ms |",
      "|---|---|---|---|---|---|---|",
      `| ${e.live.toLocaleString("en")} | ${e.rate} (probes created in ${e.createSeconds.toFixed(1)} s) | ${e.events}/${e.probes} | ${e.lag.p50} | ${e.lag.p99} | ${e.lag.max} | ${pass ? "yes" : "**no**"} |`,
      "",
    );
  }
  return lines.join("\n");
}

await runAsBenchMain(import.meta.url, runScaleBench, renderScale);
