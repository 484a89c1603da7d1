/**
 * Redis Cluster benchmark (issue 14): the store on a 3-primary loopback
 * cluster (REDIS_PARTITIONS=16) next to a single redis-server, in the same run.
 *
 *   node --import tsx bench/cluster-bench.ts    # progress lines, then one JSON line (ClusterReport)
 *
 * - Throughput of the `npm run bench` operations (create, get, extend, close)
 *   through RedisStore in this process, 32 concurrent calls, rounds of
 *   CLUSTER_BENCH_ROUND_MS interleaved between the two deployments so that
 *   the machine's load hits both alike; the ratio is cluster / single per
 *   operation (median of the round ratios). The service layer above the store
 *   is the same code on both, so the store is what differs.
 * - Memory per live session: used_memory summed over the primaries before and
 *   after CLUSTER_BENCH_MEMORY_SESSIONS sessions, on both.
 * - Expiry lag at CLUSTER_BENCH_LIVE live sessions on the cluster: the service
 *   in its own process (src/main.ts) on the cluster; probe sessions with a
 *   2 s TTL created over gRPC at CLUSTER_BENCH_EXPIRY_RATE/s for 10 s; a
 *   remote watcher of EXPIRED records arrival − expire_time, and the event's
 *   log time (its cursor's ms, Redis's clock) − expire_time: the scheduler's share.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionClient } from "@sessiond/client";
import { Redis } from "ioredis";
import { runAsBenchMain } from "./child-main.js";
import { watchExpired } from "./expired-watcher.js";
import { waitForServiceReady } from "./service-ready.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { StoreLimits } from "../src/store/store.js";
import { freePort, startRedisServer } from "../test/support/redis-server.js";
import { startRedisCluster } from "../test/support/redis-cluster.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const num = (name: string, fallback: number): number => Number(process.env[name] || String(fallback));
const ROUNDS = num("CLUSTER_BENCH_ROUNDS", 3);
const ROUND_MS = num("CLUSTER_BENCH_ROUND_MS", 3000);
const CONCURRENCY = 32;
const MEMORY_SESSIONS = num("CLUSTER_BENCH_MEMORY_SESSIONS", 20_000);
const LIVE = num("CLUSTER_BENCH_LIVE", 100_000);
const EXPIRY_RATE = num("CLUSTER_BENCH_EXPIRY_RATE", 500);
const EXPIRY_SECONDS = 10;
/** CLUSTER_BENCH_EXPIRY_ON=cluster (or single): measure expiry lag on one deployment only (default both, cluster first). */
const EXPIRY_ON = (["cluster", "single"] as const).filter((w) => (process.env["CLUSTER_BENCH_EXPIRY_ON"] || "cluster,single").split(",").includes(w));
const PARTITIONS = 16;
const LIMITS: StoreLimits = { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000, maxSessionsPerUser: 0 };
const OPS = ["create", "get", "extend", "close"] as const;
type Op = (typeof OPS)[number];

export interface LatencyStats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export interface ExpiryResult {
  readonly live: number;
  readonly rate: number;
  readonly probes: number;
  readonly events: number;
  readonly failed: number;
  readonly lag: LatencyStats;
  /** expire_time → the EXPIRED event's log time: the scheduler's share of the lag (the rest is the event tail and delivery). */
  readonly schedulerLag?: LatencyStats;
}

export interface ClusterReport {
  /** ops/s per operation, per round, for each deployment. */
  readonly throughput?: { readonly single: Record<Op, number[]>; readonly cluster: Record<Op, number[]>; readonly ratio: Record<Op, number> };
  readonly memory?: { readonly sessions: number; readonly singleBytes: number; readonly clusterBytes: number };
  readonly expiry?: ExpiryResult;
  /** The same measurement on one redis-server, right after, for reference. */
  readonly expirySingle?: ExpiryResult;
  readonly error?: string;
}

function stats(values: number[]): LatencyStats {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s.at(-1) ?? Number.NaN };
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : ((s[Math.floor((s.length - 1) / 2)] as number) + (s[Math.ceil((s.length - 1) / 2)] as number)) / 2;
}

function session(i: number, ttlMs: number): Parameters<RedisStore["create"]>[0] {
  return {
    tenant: "default",
    userId: `user-${String(i % 10_000).padStart(5, "0")}`,
    dataSource: `source-${i % 10}`,
    accessLevel: i % 3 === 0 ? "write" : "read",
    ttlMs,
    metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }),
    requestId: "",
  };
}

/** Runs `op` with CONCURRENCY callers for ROUND_MS; ops/s. `ids` are live sessions (created by create, ended by close). */
async function measure(store: RedisStore, op: Op, ids: string[]): Promise<number> {
  let done = 0;
  let n = ids.length;
  const until = Date.now() + ROUND_MS;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (Date.now() < until) {
      const i = n++;
      if (op === "create") ids.push((await store.create(session(i, 3_600_000))).session.sessionId);
      else {
        const id = op === "close" ? ids.pop() : ids[i % ids.length];
        if (id === undefined) return;
        if (op === "get") await store.get("default", id, { touch: true, includeEnded: false });
        else if (op === "extend") await store.extend("default", id, 3_600_000);
        else await store.close("default", id);
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return done / ((performance.now() - started) / 1000);
}

async function usedMemory(clients: readonly Redis[]): Promise<number> {
  let sum = 0;
  for (const c of clients) sum += Number(/used_memory:(\d+)/.exec(await c.info("memory"))?.[1]);
  return sum;
}

async function load(store: RedisStore, count: number, ttlMs: (i: number) => number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await store.create(session(i, ttlMs(i)));
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
}

/** The service on the cluster (seeds) or on one Redis (url). */
async function startService(target: { seeds: string } | { url: string }): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, ["--max-semi-space-size=64", "--import", "tsx", join(ROOT, "src/main.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      ...("seeds" in target ? { REDIS_URL: "", REDIS_CLUSTER_NODES: target.seeds, REDIS_PARTITIONS: String(PARTITIONS) } : { REDIS_URL: target.url }),
      ALLOW_PLAINTEXT: "true",
      LOG_LEVEL: "warn",
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

async function stopService(service: { child: ChildProcess }): Promise<void> {
  if (service.child.exitCode !== null) return;
  const exited = new Promise((resolve) => service.child.once("exit", resolve));
  service.child.kill("SIGTERM");
  await exited;
}

async function expiryLag(url: string): Promise<ExpiryResult> {
  const client = createSessionClient(url, { timeoutMs: 30_000 });
  const lags: number[] = [];
  const scheduler: number[] = [];
  const watcher = await watchExpired(client, (arrivedAt, expireAt, loggedAt) => {
    lags.push(arrivedAt - expireAt);
    scheduler.push(loggedAt - expireAt);
  });
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
  const deadline = Date.now() + 2000 + 15_000;
  while (lags.length < created && Date.now() < deadline) await sleep(50);
  await watcher.stop();
  return { live: LIVE, rate: EXPIRY_RATE, probes: created, events: lags.length, failed, lag: stats(lags), schedulerLag: stats(scheduler) };
}

export async function runClusterBench(log: (line: string) => void): Promise<ClusterReport> {
  const single = await startRedisServer();
  const cluster = await startRedisCluster({ primaries: 3, replicas: 0 });
  const seeds = cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  const stores = {
    single: new RedisStore({ url: single.url, keyPrefix: "sd:", limits: LIMITS, commandTimeoutMs: 30_000 }),
    cluster: new RedisStore({ url: "", cluster: { nodes: seeds }, partitions: PARTITIONS, keyPrefix: "sd:", limits: LIMITS, commandTimeoutMs: 30_000 }),
  };
  const raw = { single: [single.client()], cluster: cluster.nodes.map((n) => cluster.client(n)) };
  const flush = async (which: "single" | "cluster"): Promise<void> => {
    for (const c of raw[which]) await c.flushall();
  };
  let service: { child: ChildProcess; url: string } | undefined;
  const report: { -readonly [K in keyof ClusterReport]: ClusterReport[K] } = {};
  try {
    await Promise.all([stores.single.ping(), stores.cluster.ping()]);
    const empty = (): Record<Op, number[]> => ({ create: [], get: [], extend: [], close: [] });
    const rates = { single: empty(), cluster: empty() };
    const ids = { single: [] as string[], cluster: [] as string[] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const op of OPS) {
        for (const which of round % 2 === 0 ? (["single", "cluster"] as const) : (["cluster", "single"] as const)) {
          const rate = await measure(stores[which], op, ids[which]);
          rates[which][op].push(rate);
          log(`round ${round + 1} ${op} ${which}: ${Math.round(rate)} ops/s`);
        }
      }
    }
    const ratio = Object.fromEntries(OPS.map((op) => [op, median(rates.cluster[op].map((c, i) => c / (rates.single[op][i] as number)))])) as Record<Op, number>;
    report.throughput = { single: rates.single, cluster: rates.cluster, ratio };

    const perSession: Record<"single" | "cluster", number> = { single: 0, cluster: 0 };
    for (const which of ["single", "cluster"] as const) {
      await flush(which);
      await stores[which].lastEventId();
      const before = await usedMemory(raw[which]);
      await load(stores[which], MEMORY_SESSIONS, () => 7_200_000);
      perSession[which] = ((await usedMemory(raw[which])) - before) / MEMORY_SESSIONS;
      log(`memory per session, ${which}: ${perSession[which].toFixed(0)} B`);
    }
    report.memory = { sessions: MEMORY_SESSIONS, singleBytes: perSession.single, clusterBytes: perSession.cluster };

    for (const which of EXPIRY_ON) {
      await flush(which);
      const started = Date.now();
      await load(stores[which], LIVE, (i) => 7_200_000 + (i % 3600) * 1000);
      log(`loaded ${LIVE} live sessions (${which}) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      service = await startService(which === "cluster" ? { seeds: cluster.seeds } : { url: single.url });
      const e = await expiryLag(service.url);
      await stopService(service);
      service = undefined;
      if (which === "cluster") report.expiry = e;
      else report.expirySingle = e;
      const share = e.schedulerLag === undefined ? "" : `; scheduler's share p50 ${e.schedulerLag.p50} ms, p99 ${e.schedulerLag.p99} ms`;
      log(`expiry lag at ${LIVE} live (${which}), ${EXPIRY_RATE}/s: p50 ${e.lag.p50} ms, p99 ${e.lag.p99} ms, max ${e.lag.max} ms (${e.events}/${e.probes})${share}`);
    }
  } catch (error) {
    report.error = error instanceof Error ? error.message : String(error);
  } finally {
    if (service !== undefined) await stopService(service);
    for (const c of [...raw.single, ...raw.cluster]) c.disconnect();
    await Promise.all([stores.single.dispose(), stores.cluster.dispose()]);
    await single.stop();
    await cluster.stop();
  }
  return report;
}

export function renderCluster(report: ClusterReport): string {
  const lines = ["## Redis Cluster (bench/cluster-bench.ts)", ""];
  lines.push(
    `Method: RedisStore in the bench process, ${CONCURRENCY} concurrent calls, on a 3-primary loopback cluster (no replicas, REDIS_PARTITIONS=${PARTITIONS}) ` +
      `and on one redis-server, rounds of ${ROUND_MS} ms interleaved (${ROUNDS} rounds); ratio = cluster / single, median of the round ratios. ` +
      "Both deployments share the same 2 cores with the bench, so the cluster's three servers compete for them.",
    "",
  );
  const t = report.throughput;
  if (t !== undefined) {
    lines.push("| operation | single ops/s (median) | cluster ops/s (median) | ratio |", "|---|---|---|---|");
    for (const op of OPS) lines.push(`| ${op} | ${Math.round(median(t.single[op]))} | ${Math.round(median(t.cluster[op]))} | ${t.ratio[op].toFixed(2)}× |`);
    lines.push("");
  }
  const m = report.memory;
  if (m !== undefined) lines.push(`Memory per live session (${m.sessions.toLocaleString("en-US")} sessions, used_memory summed over primaries): single ${m.singleBytes.toFixed(0)} B, cluster ${m.clusterBytes.toFixed(0)} B.`, "");
  for (const [label, e] of [["the cluster", report.expiry], ["one redis-server (reference, measured right after)", report.expirySingle]] as const) {
    if (e === undefined) continue;
    lines.push(
      `Expiry lag on ${label} at ${e.live.toLocaleString("en-US")} live sessions, ${e.rate} expirations/s for ${EXPIRY_SECONDS} s (service in its own process, remote watcher): ` +
        `p50 ${e.lag.p50} ms, p99 ${e.lag.p99} ms, max ${e.lag.max} ms, ${e.events}/${e.probes} events, ${e.failed} failed creates` +
        (e.schedulerLag === undefined ? "." : `; the scheduler's share (the event's log time − expire_time) p50 ${e.schedulerLag.p50} ms, p99 ${e.schedulerLag.p99} ms.`),
      "",
    );
  }
  if (report.error !== undefined) lines.push(`Error: ${report.error}`, "");
  return lines.join("\n");
}

await runAsBenchMain(import.meta.url, runClusterBench, renderCluster);
