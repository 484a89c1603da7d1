/**
 * WatchSessions benchmark: expiry lag, fan-out, memory per session.
 *
 *   npx tsx bench/watch-bench.ts            # the whole run (a few minutes), prints a table and a JSON line
 *   WATCH_BENCH_QUICK=1 npx tsx bench/watch-bench.ts   # smaller sizes, for a smoke run
 *   WATCH_BENCH_ONLY=fanout (or expiry) npx tsx bench/watch-bench.ts   # one part
 *   WATCH_BENCH_BUDGET_S=480                            # no step starts after this many seconds (recorded as skipped)
 *   WATCH_BENCH_NODE_FLAGS="--max-semi-space-size=64"   # Node flags of the service process
 *   WATCH_BENCH_CLIENT_NODE_FLAGS="--cpu-prof"          # Node flags of the fan-out watchers' process
 *   WATCH_BENCH_FANOUTS=lean:1000,connect:10000         # fan-outs to run, reader:watchers (default lean:1000,lean:10000,connect:1000)
 *   WATCH_BENCH_PER_EVENT=1                             # also print each fan-out event's last-watcher time (stderr)
 *
 * On a private redis-server, with the service in its own process
 * (`node --import tsx src/main.ts`):
 * - Expiry lag: L live sessions (10k, then 100k) are loaded, then probe
 *   sessions come due at 1000/s for 5 s: the bench writes each into Redis with
 *   the store's create script 0.5-5 s before its slot (bench/expiry-schedule.ts),
 *   so the rate holds on a loaded machine. A watcher
 *   in this process (remote from the service, over h2c) records
 *   arrival - expire_time for every EXPIRED event: p50/p99/max. In the same run,
 *   for the same expire times, mirror keys (SET PXAT expire_time, among the same
 *   population of TTL keys) measure Redis's own `expired` notification lag, for
 *   comparison (the bench enables notify-keyspace-events itself: the service
 *   neither needs nor sets it).
 * - Fan-out: 1k and 10k watch streams held by a separate process
 *   (this file with --fanout-client); after one warm-up update (reported, not
 *   measured), an update every 100 ms (1k) or 1 s (10k); latency = arrival
 *   at a watcher - the event's log time (its cursor's ms, Redis's clock on the
 *   same machine): p50/p99 over all deliveries, and p99 of the time until the
 *   LAST watcher got each event.
 * - Memory: Redis used_memory per live session after the 100k load, with and
 *   without the event log (which is bounded by WATCH_RETENTION_EVENTS, not per session).
 *
 * A step that fails (a setup call that still times out after its retries, a
 * fan-out client that dies) is recorded in the report's `errors` and the run
 * goes on: the last stdout line is always the JSON report (WatchBenchReport)
 * with what was measured, which bench/parts/watch.ts reads.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { setMaxListeners } from "node:events";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { Redis } from "ioredis";
import { createSessionClient, createWatchReader, EventType, type SessionClient, type WatchSessionsCaller } from "@sessiond/client";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { SessionStore } from "../src/store/store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { BenchSealer, fill, scheduleExpiries } from "./expiry-schedule.js";
import { stopProcess } from "./service-process.js";
import { watchExpired } from "./expired-watcher.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const QUICK = process.env["WATCH_BENCH_QUICK"] === "1";
/** No new step starts after this much wall time (the part's own timeout, WATCH_TIMEOUT_MS, is longer). */
const BUDGET_MS = Number(process.env["WATCH_BENCH_BUDGET_S"] || "480") * 1000;
/** "expiry" or "fanout" to run one part only. */
const ONLY = process.env["WATCH_BENCH_ONLY"] ?? "";
/** Node flags of the service process (space-separated), e.g. the production ones bench/run.ts passes. */
const NODE_FLAGS = (process.env["WATCH_BENCH_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== "");
/** Node flags of the fan-out watchers' process, e.g. "--cpu-prof" to see where a watcher's time goes. */
const CLIENT_NODE_FLAGS = (process.env["WATCH_BENCH_CLIENT_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== "");
const ENCRYPTION_KEYS = `bench:${Buffer.alloc(32, 9).toString("base64")}`;

export interface Stats {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

function stats(values: number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return { n: sorted.length, p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? Number.NaN };
}

function cursorMs(cursor: string): number {
  return Number(cursor.split("-")[0]);
}

// ---------------------------------------------------------------- fan-out client (child process)

if (process.argv.includes("--fanout-client")) {
  const url = process.argv[process.argv.indexOf("--fanout-client") + 1] ?? "";
  const watchers = Number(process.argv[process.argv.indexOf("--watchers") + 1] ?? 1000);
  const events = Number(process.argv[process.argv.indexOf("--events") + 1] ?? 20);
  const reader = process.argv[process.argv.indexOf("--reader") + 1] ?? "lean";
  // Several HTTP/2 connections, as many client processes would have.
  const clients: WatchSessionsCaller[] = Array.from({ length: Math.ceil(watchers / 1000) }, () => (reader === "connect" ? createSessionClient(url) : createWatchReader(url)));
  const abort = new AbortController();
  // One signal for every stream of this process: not a leak.
  setMaxListeners(0, abort.signal);
  const deliveries: number[] = [];
  const lastByEvent = new Map<string, number>();
  let ready = 0;
  /** Watchers that got the warm-up event (the first update, not measured), and its slowest delivery. */
  let warmedUp = 0;
  let coldLastWatcherMs = 0;
  /** Streams that ended with an error, and the first error. */
  let failed = 0;
  let firstFailure = "";
  /** Watchers that got every event, and those that got every event or ended early. */
  let complete = 0;
  let done = 0;
  let allDone: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const count = (): void => {
    done += 1;
    if (done === watchers) allDone();
  };
  const one = async (i: number): Promise<void> => {
    const client = clients[i % clients.length] as WatchSessionsCaller;
    let registered = false;
    let warm = false;
    let seen = 0;
    try {
      // Registered once the first heartbeat arrives: with the initial snapshot, right after it (without, only after
      // WATCH_HEARTBEAT, 15 s by default, which every fan-out would wait for).
      for await (const r of client.watchSessions({ userId: "fanout", eventTypes: [EventType.UPDATED], sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
        const e = r.event;
        if (e === undefined || e.type === EventType.SNAPSHOT) continue;
        if (e.type === EventType.HEARTBEAT) {
          if (!registered) ready += 1;
          registered = true;
          continue;
        }
        const now = Date.now();
        const latency = now - cursorMs(e.cursor);
        if (!warm) {
          warm = true;
          warmedUp += 1;
          coldLastWatcherMs = Math.max(coldLastWatcherMs, latency);
          continue;
        }
        deliveries.push(latency);
        lastByEvent.set(e.cursor, Math.max(lastByEvent.get(e.cursor) ?? 0, latency));
        seen += 1;
        // Stay subscribed: cancelling streams while the last event is still being
        // delivered to others would measure the cancellations, not the fan-out.
        if (seen === events) {
          complete += 1;
          count();
        }
      }
    } catch (error) {
      // The end of the run aborts every stream: only what ended before that is a failure.
      if (!abort.signal.aborted) {
        failed += 1;
        firstFailure ||= String(error);
      }
      // Ended early: counted as done so that the run ends (see "completed").
      if (seen < events) count();
    }
  };
  const all = Array.from({ length: watchers }, (_, i) => one(i));
  // The parent waits for "ready" (every stream had its first heartbeat), then writes.
  const cpuUs = (): number => {
    const cpu = process.cpuUsage();
    return cpu.user + cpu.system;
  };
  const timer = setInterval(() => process.stdout.write(`${JSON.stringify({ ready, warmedUp, done, cpuUs: cpuUs() })}\n`), 100);
  await Promise.race([finished, sleep(120_000)]);
  clearInterval(timer);
  process.stdout.write(`${JSON.stringify({ ready, warmedUp, done, cpuUs: cpuUs() })}\n`);
  abort.abort();
  await Promise.race([Promise.all(all), sleep(10_000)]);
  if (process.env["WATCH_BENCH_PER_EVENT"] === "1") process.stderr.write(`fan-out, last watcher per event (ms): ${[...lastByEvent.values()].join(" ")}\n`);
  process.stdout.write(`${JSON.stringify({ result: { deliveries: stats(deliveries), lastWatcher: stats([...lastByEvent.values()]), completed: complete, watchers, coldLastWatcherMs, failed, firstFailure } })}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------- the service process

interface Service {
  readonly url: string;
  readonly child: ChildProcess;
}

function startService(redisUrl: string, env: Record<string, string>): Promise<Service> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_FLAGS, "--import", "tsx", join(ROOT, "src/main.ts")], {
      cwd: ROOT,
      env: { ...process.env, HOST: "127.0.0.1", PORT: "0", REDIS_URL: redisUrl, ENCRYPTION_KEYS, AUDIT_LOG: "off", LOG_LEVEL: "info", SHUTDOWN_DELAY: "0s", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const match = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (match?.[1] !== undefined) {
        child.stdout?.off("data", onData);
        child.stdout?.resume();
        resolve({ url: match[1], child });
      }
    };
    child.stdout?.on("data", onData);
    child.once("exit", (code) => reject(new Error(`service exited ${code}: ${out.slice(-1000)}`)));
  });
}

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info("memory");
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
}

/** Loads sessions from..to-1, long-lived, straight through RedisStore (faster than RPCs; same scripts). */
async function preload(store: SessionStore, sealer: BenchSealer, from: number, to: number): Promise<void> {
  await fill(store, from, to, (i) => ({
    tenant: "default",
    ...sealer.sealed("default", JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 })),
    userId: `user-${String(i % 10_000).padStart(5, "0")}`,
    dataSource: `source-${i % 10}`,
    accessLevel: i % 3 === 0 ? "write" : "read",
    ttlMs: 3_600_000 + (i % 1000) * 1000,
    requestId: "",
  }));
}

/**
 * Runs a setup call (not a measured one) again when it fails, so that one slow
 * moment of a loaded machine does not cost the whole run; the last failure is thrown.
 */
async function retrying<T>(call: () => Promise<T>, attempts = 4): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= attempts) throw error;
      await sleep(500 * attempt);
    }
  }
}

function message(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

export interface ExpiryResult {
  readonly live: number;
  readonly service: Stats;
  /** expire_time → the EXPIRED event's log time (its cursor's ms, Redis's clock): the expiry itself, without delivery. */
  readonly written?: Stats;
  readonly redisNotification: Stats;
  readonly redisDelivered: number;
  readonly probes: number;
  /** Creates that failed (counted, not measured). */
  readonly failed: number;
  /** Probes written less than 0.5 s before their slot: the bench fell behind its schedule. */
  readonly late?: number;
  /** Probes written per second while writing. */
  readonly createRate?: number;
  /** How long creating the probes took (rate check). */
  readonly seconds: number;
}

/**
 * Probes due at `rate`/s for `seconds` (bench/expiry-schedule.ts: written by
 * the bench with the store's create script 0.5–5 s before their slot, sealed
 * as the service seals); measures service and Redis notification lag.
 */
async function expiryLag(client: SessionClient, store: SessionStore, sealer: BenchSealer, raw: Redis, subscriber: Redis, live: number, rate: number, seconds: number): Promise<ExpiryResult> {
  const probes = new Map<string, number>();
  const serviceLag: number[] = [];
  const writtenLag: number[] = [];
  const redisLag: number[] = [];
  const onMessage = (_ch: string, key: string): void => {
    if (!key.startsWith("benchx:")) return;
    const at = probes.get(key.slice(7));
    if (at !== undefined) redisLag.push(Date.now() - at);
  };
  subscriber.on("message", onMessage);
  const watcher = await watchExpired(client, (arrivedAt, expireAt, loggedAt) => {
    serviceLag.push(arrivedAt - expireAt);
    writtenLag.push(loggedAt - expireAt);
  });
  const started = Date.now();
  const schedule = await scheduleExpiries({
    store,
    rate,
    seconds,
    session: (i) => ({ tenant: "default", ...sealer.sealed("default", '{"probe":true}'), userId: "probe", dataSource: `source-${i % 10}`, accessLevel: "read", requestId: "" }),
    onCreated: async (record) => {
      probes.set(record.sessionId, record.expireTime);
      await raw.set(`benchx:${record.sessionId}`, "1", "PXAT", record.expireTime);
    },
  });
  const createdIn = (Date.now() - started) / 1000;
  // Wait for the last expiries plus a margin for the service; Redis's own lag may be far longer.
  const deadline = schedule.windowEnd + 10_000;
  while (serviceLag.length < probes.size && Date.now() < deadline) await sleep(50);
  await sleep(1000);
  await watcher.stop();
  subscriber.off("message", onMessage);
  return {
    live,
    service: stats(serviceLag),
    written: stats(writtenLag),
    redisNotification: stats(redisLag),
    redisDelivered: redisLag.length,
    probes: probes.size,
    failed: schedule.failed,
    late: schedule.late,
    createRate: schedule.createRate,
    seconds: createdIn,
  };
}

/**
 * How the fan-out watchers read their streams: "lean" is sessiond's WatchReader
 * (packages/client/src/watch-reader.ts), "connect" is connect-es's generated client.
 */
export type FanoutReader = "lean" | "connect";
/**
 * The fan-outs to run. The target is judged on WatchReader at 10k; connect-es's client is shown next to it at 1k
 * only by default (its 10k run adds a minute or more to the bench and judges nothing).
 */
const FANOUTS: readonly { reader: FanoutReader; watchers: number }[] = (process.env["WATCH_BENCH_FANOUTS"] || (QUICK ? "lean:200,lean:1000,connect:200" : "lean:1000,lean:10000,connect:1000"))
  .split(",")
  .map((item) => {
    const [reader, watchers] = item.trim().split(":");
    if ((reader !== "lean" && reader !== "connect") || !Number.isInteger(Number(watchers)) || Number(watchers) < 1) throw new Error(`WATCH_BENCH_FANOUTS: "${item}" is not reader:watchers (reader lean or connect)`);
    return { reader, watchers: Number(watchers) };
  });

export interface FanoutResult {
  readonly reader: FanoutReader;
  readonly watchers: number;
  /** The warm-up event (not in the stats): time until the last watcher had it, ms. */
  readonly coldLastWatcherMs: number;
  /** Streams that ended with an error before the end, and the first such error. */
  readonly failed: number;
  readonly firstFailure: string;
  readonly completed: number;
  readonly deliveries: Stats;
  readonly lastWatcher: Stats;
  /** CPU time per delivery from the first update to the last delivery, µs: of the service and of the watchers' process. */
  readonly serviceCpuUsPerDelivery?: number;
  readonly clientCpuUsPerDelivery?: number;
}

/** CPU time (user + system) a process has used so far, µs, from /proc (Linux); NaN elsewhere. */
function processCpuUs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may contain spaces): state is the 3rd field, utime the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    // USER_HZ is 100 on Linux.
    return ticks * 10_000;
  } catch {
    return Number.NaN;
  }
}

async function fanout(service: Service, client: SessionClient, watchers: number, events: number, reader: FanoutReader): Promise<FanoutResult> {
  const url = service.url;
  const args = ["--fanout-client", url, "--watchers", String(watchers), "--events", String(events), "--reader", reader];
  // The watchers' process runs with the service's production flag (a larger young generation), as a busy client would.
  const child = spawn(process.execPath, ["--max-semi-space-size=64", ...CLIENT_NODE_FLAGS, "--import", "tsx", fileURLToPath(import.meta.url), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "inherit"],
  });
  let buffer = "";
  let ready = 0;
  let warmedUp = 0;
  let done = 0;
  let clientCpuUs = Number.NaN;
  let result: FanoutResult | undefined;
  child.stdout?.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      const msg = JSON.parse(line) as { ready?: number; warmedUp?: number; done?: number; cpuUs?: number; result?: FanoutResult };
      if (msg.ready !== undefined) ready = msg.ready;
      if (msg.warmedUp !== undefined) warmedUp = msg.warmedUp;
      if (msg.done !== undefined) done = msg.done;
      if (msg.cpuUs !== undefined) clientCpuUs = msg.cpuUs;
      if (msg.result !== undefined) result = msg.result;
    }
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A request id makes the retry of a create that timed out find the session it made.
  const { session } = await retrying(() => client.createSession({ userId: "fanout", dataSource: "fanout", ttl: durationFromMs(3_600_000), requestId: `fanout-${reader}-${watchers}` }));
  const deadline = Date.now() + 90_000;
  while (ready < watchers && Date.now() < deadline) await sleep(100);
  // Let the tail of the setup (the last registrations' first heartbeats, their garbage) settle before measuring.
  await sleep(1000);
  // One event at a time to all of them: 100 ms apart for 1k watchers, 1 s apart for 10k.
  const intervalMs = Math.max(100, watchers / 10);
  // A warm-up event first, as the throughput part warms up: its delivery is reported (cold) but not measured.
  await retrying(() => client.updateSession({ sessionId: session?.sessionId ?? "", metadata: { warmUp: true } }));
  const warmDeadline = Date.now() + 30_000;
  while (warmedUp < watchers && Date.now() < warmDeadline) await sleep(50);
  await sleep(intervalMs);
  const serviceCpuStart = processCpuUs(service.child.pid);
  const clientCpuStart = clientCpuUs;
  for (let i = 0; i < events; i++) {
    // A retried update may deliver one event twice (the first try landed): a watcher counts it, never waits for it.
    await retrying(() => client.updateSession({ sessionId: session?.sessionId ?? "", metadata: { i } }));
    await sleep(intervalMs);
  }
  // Every watcher has its events (or gave up): the work of this fan-out is done.
  const doneBy = Date.now() + 30_000;
  while (done < watchers && child.exitCode === null && Date.now() < doneBy) await sleep(50);
  const serviceCpu = processCpuUs(service.child.pid) - serviceCpuStart;
  const clientCpu = clientCpuUs - clientCpuStart;
  await exited;
  if (result === undefined) throw new Error("the fan-out client reported nothing");
  const delivered = Math.max(1, result.deliveries.n);
  return { ...result, reader, serviceCpuUsPerDelivery: serviceCpu / delivered, clientCpuUsPerDelivery: clientCpu / delivered };
}

// ---------------------------------------------------------------- main

/** Updates sent to the fan-out watchers, each delivered to every one of them. */
const FANOUT_EVENTS = 20;

/** The last stdout line: what bench/run.ts reads. */
export interface WatchBenchReport {
  readonly quick: boolean;
  /** Probe sessions created (and so expiring) per second. */
  readonly rate: number;
  readonly seconds: number;
  /** Events each fan-out watcher is sent. */
  readonly events: number;
  readonly expiry: readonly ExpiryResult[];
  readonly fanouts: readonly FanoutResult[];
  readonly memory?: { readonly perSession: number; readonly perSessionWithLog: number; readonly logBytes: number };
  /** Steps that failed ("<step>: <error>"); the others' results are above. */
  readonly errors: readonly string[];
  /** Seconds per step. */
  readonly durations: Readonly<Record<string, number>>;
}

const redis = await startRedisServer();
const raw = redis.client();
const subscriber = redis.client();
const sealer = new BenchSealer();
// As the service with these keys writes: through the sealing wrapper.
const store = sealer.wrap(new RedisStore({ url: redis.url, keyPrefix: "sd:", limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000 }, commandTimeoutMs: 30_000 }));
let service: Service | undefined;
const sizes = QUICK ? [2_000, 10_000] : [10_000, 100_000];
const rate = QUICK ? 200 : 1000;
const seconds = QUICK ? 3 : 5;
const expiry: ExpiryResult[] = [];
const fanouts: FanoutResult[] = [];
/** What failed: the run goes on with the next measurement and reports what it has. */
const errors: string[] = [];
/** Seconds each step took, to keep the bench's wall time in view. */
const durations: Record<string, number> = {};
let memory: { perSession: number; perSessionWithLog: number; logBytes: number } | undefined;
const began = Date.now();
/** The cumulative report, printed after every step: a run killed from outside still leaves what it measured. */
const emit = (): void => {
  const report: WatchBenchReport = { quick: QUICK, rate, seconds, events: FANOUT_EVENTS, expiry, fanouts, errors, durations, ...(memory === undefined ? {} : { memory }) };
  process.stdout.write(`${JSON.stringify(report)}\n`);
};
const timed = async (label: string, step: () => Promise<void>): Promise<void> => {
  if (Date.now() - began > BUDGET_MS) {
    errors.push(`${label}: skipped, the time budget (WATCH_BENCH_BUDGET_S=${BUDGET_MS / 1000}) was spent`);
    return;
  }
  const started = Date.now();
  try {
    await step();
  } catch (error) {
    errors.push(`${label}: ${message(error)}`);
    process.stdout.write(`failed: ${message(error)}\n`);
  } finally {
    durations[label] = (Date.now() - started) / 1000;
    emit();
  }
};
try {
  // WATCH_HEARTBEAT stays at its default (15 s), as in production: idle watchers wake that often.
  service = await startService(redis.url, {
    ENCRYPTION_KEYS: sealer.keys,
    MAX_WATCHERS_PER_PRINCIPAL: "20000",
    MAX_SESSIONS_PER_USER: "0",
    SESSION_TTL_MIN: "1s",
    // The fan-out opens its 10,000 watches on a few connections: lift the per-connection stream limits.
    HTTP2_MAX_CONCURRENT_STREAMS: "20000",
    MAX_STREAMS_PER_CONNECTION: "20000",
    MAX_STREAMS: "40000",
  });
  // A generous deadline: the calls of this bench set up measurements; a loaded machine must slow them, not fail them.
  const client = createSessionClient(service.url, { timeoutMs: 30_000 });
  await raw.config("SET", "notify-keyspace-events", "Ex");
  await subscriber.subscribe("__keyevent@0__:expired");
  let loaded = 0;
  for (const size of ONLY === "fanout" ? [] : sizes) {
    await timed(`expiry at ${size}`, async () => {
      const before = await usedMemory(raw);
      process.stdout.write(`loading ${size - loaded} sessions ... `);
      await preload(store, sealer, loaded, size);
      const added = size - loaded;
      loaded = size;
      const after = await usedMemory(raw);
      const logBytes = Number(await raw.call("MEMORY", "USAGE", "sd:ev", "SAMPLES", "0"));
      if (size === sizes.at(-1)) {
        // The log holds the CREATED events of this load (and earlier ones, within retention).
        const logShare = (logBytes * Math.min(added, 100_000)) / Math.max(1, Number(await raw.xlen("sd:ev")));
        memory = { perSessionWithLog: (after - before) / added, perSession: (after - before - logShare) / added, logBytes };
      }
      process.stdout.write(`probing expiry at ${rate}/s for ${seconds} s ... `);
      const result = await expiryLag(client, store, sealer, raw, subscriber, size, rate, seconds);
      expiry.push(result);
      process.stdout.write(`service p99 ${result.service.p99} ms (${result.service.n}/${result.probes} events, probes written at ${result.createRate?.toFixed(0)}/s, ${result.late} late)\n`);
    });
  }

  for (const { reader, watchers } of ONLY === "expiry" ? [] : FANOUTS) {
    await timed(`fan-out ${watchers} ${reader}`, async () => {
      process.stdout.write(`fan-out to ${watchers} watchers (${reader} reader) ... `);
      const result = await fanout(service as Service, client, watchers, FANOUT_EVENTS, reader);
      fanouts.push(result);
      process.stdout.write(`p99 ${result.deliveries.p99} ms${result.failed > 0 ? `; ${result.failed} streams failed, first: ${result.firstFailure}` : ""}\n`);
    });
  }
} catch (error) {
  errors.push(`setup: ${message(error)}`);
} finally {
  // The service first (SHUTDOWN_TIMEOUT is 10 s), then its Redis.
  if (service !== undefined) await stopProcess(service.child, 15_000);
  await store.dispose();
  subscriber.disconnect();
  raw.disconnect();
  await redis.stop();
}

const fmt = (s: Stats): string => `${s.p50} / ${s.p99} / ${s.max}`;
console.log("\nExpiry lag (ms, p50 / p99 / max), expire_time -> EXPIRED at a remote watcher:");
for (const e of expiry) {
  console.log(
    `  ${e.live.toLocaleString("en")} live sessions, ${rate}/s expiring: service ${fmt(e.service)} (${e.service.n}/${e.probes} events; written to the log ${e.written === undefined ? "?" : fmt(e.written)}); ` +
      `Redis's own 'expired' notification ${fmt(e.redisNotification)} (${e.redisDelivered}/${e.probes} delivered); ` +
      `probes written in ${e.seconds.toFixed(1)} s, ${e.failed} failed`,
  );
}
console.log("Fan-out (ms): deliveries p50 / p99 / max; time until the last watcher got an event p50 / p99 / max:");
for (const f of fanouts) {
  console.log(
    `  ${f.watchers.toLocaleString("en")} watchers, ${f.reader} reader (${f.completed} completed): ${fmt(f.deliveries)}; last watcher ${fmt(f.lastWatcher)}; ` +
      `CPU per delivery: service ${f.serviceCpuUsPerDelivery?.toFixed(0)} µs, watchers' process ${f.clientCpuUsPerDelivery?.toFixed(0)} µs; ` +
      `warm-up event (not measured): last watcher ${f.coldLastWatcherMs} ms`,
  );
}
if (memory !== undefined) {
  console.log(
    `Memory per live session (with the due queue): ${memory.perSession.toFixed(0)} B without the event log, ` +
      `${memory.perSessionWithLog.toFixed(0)} B including the CREATED events in the log (log ${(memory.logBytes / 1e6).toFixed(1)} MB, bounded by WATCH_RETENTION_EVENTS)`,
  );
}
console.log(`Steps (s): ${Object.entries(durations).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")}`);
for (const e of errors) console.log(`failed: ${e}`);
// Always the report, with what was measured and what failed: bench/parts/watch.ts renders both.
emit();
process.exit(0);
