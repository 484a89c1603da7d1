/**
 * The benchmark (`npm run bench`). Not a test: it measures and reports, and
 * never runs under `npm test`.
 *
 * On a private redis-server it measures, with 64 concurrent callers in a
 * separate load-generator process (bench/load-generator.ts):
 * - CreateSession, GetSession, ExtendSession, CloseSession over gRPC (h2c)
 *   against the real app on RedisStore;
 * - the same four operations done directly with ioredis (the floor a backend
 *   would have without the service);
 * - grpc.health.v1.Health/Check on the same server: the framework's ceiling
 *   for a trivial RPC;
 * - Redis bytes per session at 100k sessions (bench/redis-memory.ts).
 * It prints a table and overwrites bench/RESULTS.md.
 *
 * This machine is small and shared, so its speed drifts by tens of percent
 * within a minute. The ratios matter more than the absolute numbers, so the
 * operations that are compared are measured in interleaved rounds (Check,
 * Create, Get, Extend, Close, then again) rather than one long phase each:
 * drift then hits every operation alike instead of whichever ran at a bad time.
 *
 * Environment: BENCH_DURATION_MS (default 6000), measured time per operation,
 * split over the rounds; BENCH_WARMUP_MS (default 1000), unmeasured time per
 * operation before the first round; BENCH_LOG_LEVEL (default info, the
 * service's own default) for the server's logger, whose lines go to /dev/null.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import * as os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { Redis } from "ioredis";
import { startApp } from "../src/app.js";
import { loadConfig } from "../src/config/config.js";
import { createLogger } from "../src/logging/logger.js";
import { startRedisServer } from "../test/support/redis-server.js";
import type { LoadReply, LoadRequest } from "./load-generator.js";
import { summarize, type MeasuredSample, type PhaseResult, type PhaseSample, type PhaseSpec } from "./phase.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const CONCURRENCY = 64;
const ROUNDS = 3;
const WARMUP_MS = envMs("BENCH_WARMUP_MS", 1000);
const DURATION_MS = envMs("BENCH_DURATION_MS", 6000);
const ROUND_MS = Math.ceil(DURATION_MS / ROUNDS);
/** Unmeasured start of each round, so that one operation's tail does not count as the next one's. */
const ROUND_SETTLE_MS = 200;
const MEMORY_SESSIONS = 100_000;
/** How long the memory measurement may take before it is abandoned. */
const MEMORY_TIMEOUT_MS = 90_000;
/** Past this, a phase is considered hung and the run fails. */
const PHASE_SLACK_MS = 60_000;
/** Bound on creating the sessions a close round uses up. */
const FILL_TIMEOUT_MS = 60_000;

const TARGETS = {
  getOverCheck: 0.8,
  createOverCheck: 0.65,
  bytesPerSession: 600,
};

function envMs(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 300 || n > 60_000) throw new Error(`${name} must be a whole number of ms from 300 to 60000`);
  return n;
}

/** Drives the load-generator child process, one phase at a time. */
class LoadProcess {
  private constructor(private readonly child: ChildProcess) {}

  static async start(baseUrl: string, redisUrl: string): Promise<LoadProcess> {
    const child = fork(join(HERE, "load-generator.ts"), [], {
      cwd: ROOT,
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      // Latencies travel as Float64Arrays.
      serialization: "advanced",
    });
    const load = new LoadProcess(child);
    const reply = await load.request({ type: "init", baseUrl, redisUrl }, 30_000);
    if (reply.type !== "ready") throw new Error(`load generator did not start: ${JSON.stringify(reply)}`);
    return load;
  }

  async run(spec: PhaseSpec): Promise<PhaseSample> {
    const reply = await this.request({ type: "run", spec }, spec.warmupMs + spec.durationMs + PHASE_SLACK_MS);
    if (reply.type === "result") return reply.sample;
    throw new Error(`phase ${spec.name} failed in the load generator: ${reply.type === "failed" ? reply.message : reply.type}`);
  }

  async fill(spec: PhaseSpec, size: number): Promise<void> {
    const reply = await this.request({ type: "fill", spec, size }, FILL_TIMEOUT_MS);
    if (reply.type !== "filled") throw new Error(`filling the pool for ${spec.name} failed: ${reply.type === "failed" ? reply.message : reply.type}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.send({ type: "exit" } satisfies LoadRequest);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }

  private request(message: LoadRequest, timeoutMs: number): Promise<LoadReply> {
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        this.child.off("message", onMessage);
        this.child.off("exit", onExit);
      };
      const onMessage = (reply: LoadReply): void => {
        cleanup();
        resolve(reply);
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`load generator exited (code ${code})`));
      };
      const timer = setTimeout(() => {
        cleanup();
        this.child.kill("SIGKILL");
        reject(new Error(`load generator gave no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.child.on("message", onMessage);
      this.child.once("exit", onExit);
      this.child.send(message);
    });
  }
}

interface MemoryResult {
  readonly sessions: number;
  readonly bytesPerSession?: number;
  /** Bytes of the event log, which the script leaves out of bytesPerSession (it is bounded by its own retention). */
  readonly eventLogBytes?: number;
  readonly error?: string;
}

/** Runs bench/redis-memory.ts (the RedisStore's own measurement) in its own process and reads its answer. */
async function measureMemory(): Promise<MemoryResult> {
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "redis-memory.ts"), String(MEMORY_SESSIONS)], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), MEMORY_TIMEOUT_MS);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  const match = /bytes per session:\s*([\d.]+)/.exec(out);
  if (code !== 0 || match?.[1] === undefined) {
    const lines = (err + out).split("\n").map((l) => l.trim()).filter((l) => l !== "");
    const reason = lines.find((l) => /error/i.test(l)) ?? lines.at(-1) ?? "no output";
    return { sessions: MEMORY_SESSIONS, error: `bench/redis-memory.ts exited ${code}: ${oneLine(reason)}` };
  }
  // Newer versions of the script report the bounded event log apart from the per-session figure.
  const eventLog = /event log:\s*(\d+) bytes/.exec(out)?.[1];
  const result = { sessions: MEMORY_SESSIONS, bytesPerSession: Number(match[1]) };
  return eventLog === undefined ? result : { ...result, eventLogBytes: Number(eventLog) };
}

interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly redis: string;
  readonly os: string;
  readonly loadAvg: string;
}

function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  const redis = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  const redisVersion = /v=(\S+)/.exec(redis.stdout ?? "")?.[1] ?? "unknown";
  return {
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    redis: redisVersion,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadAvg: os.loadavg().map((n) => n.toFixed(2)).join(" "),
  };
}

interface Operation {
  readonly name: string;
  readonly target: PhaseSpec["target"];
  readonly op: PhaseSpec["op"];
}

/**
 * Runs each operation for WARMUP_MS (discarded), then ROUNDS rounds of every
 * operation in turn, and sums each operation's rounds.
 */
async function measureInterleaved(
  load: LoadProcess,
  redis: Redis,
  ops: readonly Operation[],
): Promise<Map<PhaseSpec["op"], PhaseResult>> {
  /** Latest throughput of each op, to size the pool a close round needs. */
  const rates = new Map<PhaseSpec["op"], number>();
  const samples = new Map<PhaseSpec["op"], MeasuredSample[]>(ops.map((o) => [o.op, []]));
  const runOne = async (o: Operation, warmupMs: number, durationMs: number): Promise<MeasuredSample> => {
    const spec: PhaseSpec = { ...o, concurrency: CONCURRENCY, warmupMs, durationMs };
    if (o.op === "close") await load.fill(spec, poolFor(rates, warmupMs + durationMs, o.target === "direct" ? 1.5 : 3));
    const redisBefore = await redisCpuUs(redis);
    // This process is the server (and an idle runner): its CPU time is the server's.
    const serverBefore = process.cpuUsage();
    const sample = await load.run(spec);
    const server = process.cpuUsage(serverBefore);
    const redisUs = (await redisCpuUs(redis)) - redisBefore;
    if (sample.windowMs > 0) rates.set(o.op, (sample.ops / sample.windowMs) * 1000);
    return { ...sample, serverCpuUs: o.target === "direct" ? 0 : server.user + server.system, redisCpuUs: redisUs };
  };
  process.stdout.write(`  ${ops[0]?.target ?? ""} warm-up:`);
  for (const o of ops) {
    process.stdout.write(` ${o.name}`);
    await runOne(o, 0, WARMUP_MS);
  }
  console.log();
  for (let round = 1; round <= ROUNDS; round++) {
    const line: string[] = [];
    for (const o of ops) {
      const sample = await runOne(o, ROUND_SETTLE_MS, ROUND_MS);
      samples.get(o.op)?.push(sample);
      line.push(`${o.name} ${fmtInt(rates.get(o.op) ?? 0)}`);
    }
    console.log(`  round ${round}/${ROUNDS} (ops/s): ${line.join(", ")}`);
  }
  return new Map(ops.map((o) => [o.op, summarize(o, samples.get(o.op) ?? [])]));
}

/** CPU time redis-server has used so far (INFO cpu), µs. */
async function redisCpuUs(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? Number.NaN);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1e6;
}

/**
 * Enough sessions for a close round to run its whole window: the faster of the
 * last close rate and twice the create rate, times a margin. gRPC rates swing
 * from round to round on this machine, so they get a wide margin; the direct
 * rates are steady, and each of their sessions costs Redis memory.
 */
function poolFor(rates: ReadonlyMap<PhaseSpec["op"], number>, ms: number, margin: number): number {
  const rate = Math.max(rates.get("close") ?? 0, 2 * (rates.get("create") ?? 1000));
  return Math.ceil((rate * margin * ms) / 1000);
}

function required<K, V>(map: ReadonlyMap<K, V>, key: K): V {
  const value = map.get(key);
  if (value === undefined) throw new Error(`no result for ${String(key)}`);
  return value;
}

interface Results {
  readonly date: string;
  readonly machine: MachineInfo;
  readonly logLevel: string;
  readonly check: PhaseResult;
  readonly service: Record<"create" | "get" | "extend" | "close", PhaseResult>;
  readonly direct: Record<"create" | "get" | "extend" | "close", PhaseResult>;
  readonly memory: MemoryResult;
  readonly totalSeconds: number;
}

const OPS = [
  ["create", "CreateSession"],
  ["get", "GetSession"],
  ["extend", "ExtendSession"],
  ["close", "CloseSession"],
] as const;

const fmtInt = (n: number): string => Math.round(n).toLocaleString("en-US");
const fmtMs = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : "-");
const fmtPct = (n: number): string => `${(n * 100).toFixed(0)} %`;
const fmtUs = (n: number): string => (Number.isFinite(n) ? n.toFixed(0) : "-");
const passMiss = (ok: boolean): string => (ok ? "pass" : "MISS");

/** Fits a message into one Markdown table cell. */
function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").replace(/\|/g, "/").trim();
  return flat.length > 160 ? `${flat.slice(0, 157)}...` : flat;
}

function errorNote(r: PhaseResult): string {
  return r.errors === 0 ? "" : ` (${fmtInt(r.errors)} errors: ${oneLine(r.firstError ?? "?")})`;
}

/** Phases in which calls failed, by name. */
function failedPhases(r: Results): string[] {
  return [r.check, ...Object.values(r.service), ...Object.values(r.direct)]
    .filter((p) => p.errors > 0)
    .map((p) => `${p.target === "direct" ? "direct " : ""}${p.name}`);
}

function render(r: Results): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push("# Benchmark results", "");
  lines.push("Written by `npm run bench` (bench/run.ts); overwritten on every run.", "");
  lines.push(`- Date: ${r.date}`);
  lines.push(`- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGiB} GiB; ${m.os}; load average at start ${m.loadAvg}`);
  lines.push(`- Node ${m.node}; redis-server ${m.redis} (private instance, persistence off)`);
  lines.push(
    `- ${CONCURRENCY} concurrent callers in a separate load-generator process; per operation ${WARMUP_MS} ms warm-up, then ${ROUNDS} interleaved rounds of ${ROUND_MS} ms measured (after ${ROUND_SETTLE_MS} ms settling each)`,
  );
  lines.push(
    `- Server: the app (startApp) on RedisStore with metadata encryption on, in the runner's process; gRPC over h2c, one HTTP/2 connection per client; log level ${r.logLevel} and audit records written to /dev/null`,
  );
  lines.push(
    "- Client, server and redis-server share the 2 cores: the service phases run three busy processes, the direct phases two. The ratios are what this machine shows, not what a server with cores of its own would.",
  );
  lines.push(`- Whole run: ${r.totalSeconds.toFixed(0)} s`, "");
  const failed = failedPhases(r);
  if (failed.length > 0) {
    lines.push(`**Warning: calls failed in ${failed.join(", ")}; those numbers do not measure the service.**`, "");
  }

  lines.push("## Throughput and latency", "");
  lines.push("| Operation | gRPC ops/s | p50 ms | p99 ms | direct ioredis ops/s | p50 ms | p99 ms | service / direct |");
  lines.push("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const [key, name] of OPS) {
    const s = r.service[key];
    const d = r.direct[key];
    lines.push(
      `| ${name}${errorNote(s)} | ${fmtInt(s.opsPerSec)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${fmtInt(d.opsPerSec)}${errorNote(d)} | ${fmtMs(d.p50Ms)} | ${fmtMs(d.p99Ms)} | ${fmtPct(s.opsPerSec / d.opsPerSec)} |`,
    );
  }
  const c = r.check;
  lines.push(`| Health/Check${errorNote(c)} | ${fmtInt(c.opsPerSec)} | ${fmtMs(c.p50Ms)} | ${fmtMs(c.p99Ms)} | | | | |`, "");
  const short = [...Object.values(r.service), ...Object.values(r.direct), r.check].filter((p) => p.windowMs < p.runs * ROUND_MS - 1);
  for (const p of short) {
    lines.push(`Note: ${p.name} (${p.target}) ran out of sessions: ${(p.windowMs / 1000).toFixed(1)} s measured in all.`);
  }
  if (short.length > 0) lines.push("");
  lines.push("Throughput of each round (ops/s), to show how steady the machine was:", "");
  for (const p of [r.check, ...Object.values(r.service), ...Object.values(r.direct)]) {
    lines.push(`- ${p.target === "direct" ? "direct " : ""}${p.name}: ${p.runOpsPerSec.map(fmtInt).join(", ")}`);
  }
  lines.push("");

  lines.push("## CPU time per call", "");
  lines.push(
    "Each process's CPU time over the phases (warm-up and settling included) divided by the successful calls. On this 2-core machine the three processes compete for the cores, so throughput also depends on how much CPU the load generator and redis-server take; the server's CPU per call is what decides throughput on a server with cores of its own.",
    "",
  );
  lines.push("| Operation | server µs/call | load generator µs/call | redis-server µs/call |");
  lines.push("|---|---:|---:|---:|");
  lines.push(`| Health/Check | ${fmtUs(c.serverCpuUsPerOp)} | ${fmtUs(c.clientCpuUsPerOp)} | ${fmtUs(c.redisCpuUsPerOp)} |`);
  for (const [key, name] of OPS) {
    const p = r.service[key];
    lines.push(`| ${name} | ${fmtUs(p.serverCpuUsPerOp)} | ${fmtUs(p.clientCpuUsPerOp)} | ${fmtUs(p.redisCpuUsPerOp)} |`);
  }
  for (const [key, name] of OPS) {
    const p = r.direct[key];
    lines.push(`| direct ${name} | - | ${fmtUs(p.clientCpuUsPerOp)} | ${fmtUs(p.redisCpuUsPerOp)} |`);
  }
  lines.push("");

  const getRatio = r.service.get.opsPerSec / c.opsPerSec;
  const createRatio = r.service.create.opsPerSec / c.opsPerSec;
  lines.push("## Targets", "");
  lines.push("| Measure | Value | Target | |");
  lines.push("|---|---:|---:|---|");
  lines.push(`| GetSession / Check throughput | ${fmtPct(getRatio)} | ≥ ${fmtPct(TARGETS.getOverCheck)} | ${passMiss(getRatio >= TARGETS.getOverCheck)} |`);
  lines.push(
    `| CreateSession / Check throughput | ${fmtPct(createRatio)} | ≥ ${fmtPct(TARGETS.createOverCheck)} | ${passMiss(createRatio >= TARGETS.createOverCheck)} |`,
  );
  // Server CPU per Check / per call: the throughput ratio a CPU-bound server would show.
  const getCpuRatio = c.serverCpuUsPerOp / r.service.get.serverCpuUsPerOp;
  const createCpuRatio = c.serverCpuUsPerOp / r.service.create.serverCpuUsPerOp;
  lines.push(`| (informative) Check / GetSession server CPU per call | ${fmtPct(getCpuRatio)} | ≥ ${fmtPct(TARGETS.getOverCheck)} | ${passMiss(getCpuRatio >= TARGETS.getOverCheck)} |`);
  lines.push(
    `| (informative) Check / CreateSession server CPU per call | ${fmtPct(createCpuRatio)} | ≥ ${fmtPct(TARGETS.createOverCheck)} | ${passMiss(createCpuRatio >= TARGETS.createOverCheck)} |`,
  );
  const bytes = r.memory.bytesPerSession;
  lines.push(
    bytes === undefined
      ? `| Redis bytes per session (${fmtInt(r.memory.sessions)} sessions) | not measured: ${r.memory.error ?? "?"} | < ${TARGETS.bytesPerSession} | MISS |`
      : `| Redis bytes per session (${fmtInt(r.memory.sessions)} sessions, ~40 B metadata, all indexes) | ${bytes.toFixed(0)} | < ${TARGETS.bytesPerSession} | ${passMiss(bytes < TARGETS.bytesPerSession)} |`,
  );
  if (r.memory.eventLogBytes !== undefined) {
    lines.push(
      `| (not in the above) event log after ${fmtInt(r.memory.sessions)} creates | ${fmtInt(r.memory.eventLogBytes)} B (${(r.memory.eventLogBytes / r.memory.sessions).toFixed(0)} per event) | bounded by its retention | |`,
    );
  }
  lines.push("");
  lines.push(
    "Direct ioredis floor: create = MULTI(HSET of the same record fields, PEXPIRE), get = HGETALL, extend = PEXPIRE, close = DEL; no indexes, counters, archive or events.",
  );
  return lines.join("\n") + "\n";
}

async function main(): Promise<void> {
  // A closed stdout (`npm run bench | head`) must not kill the run halfway and orphan redis-server
  // and the load generator: finish, clean up, and still write RESULTS.md.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});
  const startedAt = Date.now();
  const machine = machineInfo();
  const logLevel = process.env["BENCH_LOG_LEVEL"] || "info";
  console.log(`sessiond benchmark: ${machine.cpuModel} x${machine.cores}, node ${machine.node}, redis ${machine.redis}`);

  const redis = await startRedisServer();
  const redisClient = redis.client();
  let app: Awaited<ReturnType<typeof startApp>> | undefined;
  let load: LoadProcess | undefined;
  // Stopped from outside (Ctrl-C, or a parent such as npm going away): take redis-server and the
  // load generator down too instead of leaving them orphaned.
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: stopping the benchmark`);
    void Promise.allSettled([load?.stop(), redis.stop()]).finally(() => process.exit(1));
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, onSignal);
  try {
    const config = loadConfig({
      REDIS_URL: redis.url,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: logLevel,
      // As in production: metadata sealed at rest, with a key that lives for this run only.
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString("base64")}`,
    });
    // Logs and audit records are written as in production (to stdout by default), but to /dev/null.
    const logger = createLogger({ level: logLevel, destination: pino.destination({ dest: "/dev/null", sync: true }) });
    app = await startApp(config, { logger, auditDestination: pino.destination({ dest: "/dev/null", sync: true }) });
    const generator = await LoadProcess.start(app.url, redis.url);
    load = generator;
    console.log("gRPC (service and Health/Check on one server):");
    const service = await measureInterleaved(generator, redisClient, [
      { name: "Health/Check", target: "health", op: "check" },
      { name: "CreateSession", target: "service", op: "create" },
      { name: "GetSession", target: "service", op: "get" },
      { name: "ExtendSession", target: "service", op: "extend" },
      { name: "CloseSession", target: "service", op: "close" },
    ]);
    console.log("direct ioredis:");
    const direct = await measureInterleaved(generator, redisClient, [
      { name: "CreateSession", target: "direct", op: "create" },
      { name: "GetSession", target: "direct", op: "get" },
      { name: "ExtendSession", target: "direct", op: "extend" },
      { name: "CloseSession", target: "direct", op: "close" },
    ]);
    await generator.stop();
    load = undefined;
    await app.close();
    app = undefined;
    redisClient.disconnect();
    await redis.stop();

    process.stdout.write(`  memory  ${fmtInt(MEMORY_SESSIONS)} sessions via bench/redis-memory.ts ... `);
    const memory = await measureMemory();
    console.log(memory.bytesPerSession === undefined ? `failed: ${memory.error}` : `${memory.bytesPerSession.toFixed(0)} bytes/session`);

    const results: Results = {
      date: new Date().toISOString(),
      machine,
      logLevel,
      check: required(service, "check"),
      service: {
        create: required(service, "create"),
        get: required(service, "get"),
        extend: required(service, "extend"),
        close: required(service, "close"),
      },
      direct: {
        create: required(direct, "create"),
        get: required(direct, "get"),
        extend: required(direct, "extend"),
        close: required(direct, "close"),
      },
      memory,
      totalSeconds: (Date.now() - startedAt) / 1000,
    };
    const markdown = render(results);
    await writeFile(join(HERE, "RESULTS.md"), markdown);
    console.log("\n" + markdown);
    // Not a test, but a run whose calls failed measured nothing: say so in the exit code.
    if (failedPhases(results).length > 0 || memory.bytesPerSession === undefined) process.exitCode = 1;
  } finally {
    await load?.stop();
    await app?.close();
    redisClient.disconnect();
    await redis.stop();
  }
}

await main();
