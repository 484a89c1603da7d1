/**
 * Wire benchmark (issue 10): what a gRPC call costs in sessiond next to bare
 * Node gRPC servers, with the clients users have.
 *
 *   node --import tsx bench/wire-bench.ts     # prints progress, then one JSON line (WireReport)
 *
 * Servers, each in a process of its own, on one private redis-server:
 * - anchors: a bare @grpc/grpc-js server and a bare connect-node server
 *   answering grpc.health.v1.Health/Check, and a bare @grpc/grpc-js server
 *   whose CreateSession makes one auto-pipelined ioredis call of a small Lua
 *   function, and whose GetSession makes one HGETALL (the floors of a
 *   Redis-backed create and get: bench/anchors/servers.ts);
 * - sessiond with WORKERS=1 and with WORKERS=2 as production runs it: the
 *   build (`npm run build`, tsc to dist/, done first) started with
 *   `node --max-semi-space-size=64 dist/src/main.js` (package.json start:prod),
 *   metadata encryption on, logs and audit records to /dev/null. Not through
 *   tsx: its transform wraps every function created per call in a naming
 *   helper (esbuild keepNames), a per-call cost production does not pay;
 * - sessiond WORKERS=1 and WORKERS=2 with READ_CACHE_MAX_AGE=1s, GetSession
 *   only: gets of the one session answered from each process's copy
 *   (src/session/read-cache.ts);
 * - sessiond WORKERS=1 with encryption, the RPC log line and the audit record
 *   off (STRIPPED in create-budget.ts), GetSession and CreateSession: what a
 *   call costs with everything a setting can turn off turned off.
 * Load, one after the other within each round: h2load (1 connection, 64
 * streams) and a @grpc/grpc-js client (one channel, 64 calls in flight,
 * bench/grpc-js-load.ts). Operations: Health/Check on every server,
 * GetSession (one existing session) and CreateSession on both sessiond
 * variants. Server CPU per call: utime+stime from /proc/PID/stat of the
 * server's processes (the primary and its workers for WORKERS=2) before and
 * after each phase, over the calls answered; redis-server's likewise.
 * Latency p50 and p99: each call timed by the grpc-js load, each request's
 * time in h2load's request log (bench/h2load-latency.ts).
 *
 * The machine is shared, so rounds interleave every (server, operation,
 * load) phase and ratios are taken within a round, then the median over
 * rounds is reported with the spread (min–max).
 *
 * Environment: WIRE_BENCH_ROUNDS (default 5), WIRE_BENCH_PHASE_MS (default 3000).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { openSync, closeSync, existsSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { availableParallelism as availableCores, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runAsBenchMain } from "./child-main.js";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { CreateSessionRequestSchema, GetSessionRequestSchema } from "../gen/session/v1/session_pb.js";
import { createSessionClient } from "@sessiond/client";
import { freePort, startRedisServer, type RedisServerHandle } from "../test/support/redis-server.js";
import type { GrpcJsLoadResult } from "./grpc-js-load.js";
import { renderCreateBudget, STRIPPED } from "./create-budget.js";
import { latencyQuantiles } from "./h2load-latency.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const ROUNDS = envInt("WIRE_BENCH_ROUNDS", 5, 1, 20);
const PHASE_MS = envInt("WIRE_BENCH_PHASE_MS", 3000, 500, 60_000);
const CONCURRENCY = 64;
const CLOCK_TICK_US = 10_000;
const START_TIMEOUT_MS = 60_000;

export const WIRE_TARGETS = { getOverCheck: 0.8, createOverCheck: 0.65, cpuOverAnchor: 1.5 } as const;

type ServerName = "grpc-js (bare)" | "connect-node (bare)" | "grpc-js + ioredis (bare)" | "sessiond WORKERS=1" | "sessiond WORKERS=2" | typeof CACHED | typeof CACHED_2 | typeof STRIPPED;

/** sessiond with GetSession answered from copies (README, "Reading from a copy"): its GetSession only. */
const CACHED = "sessiond WORKERS=1 READ_CACHE_MAX_AGE=1s";
const CACHED_2 = "sessiond WORKERS=2 READ_CACHE_MAX_AGE=1s";
type OpName = "Health/Check" | "GetSession" | "CreateSession";
type LoaderName = "h2load 1×64" | "h2load 4×16" | "grpc-js 64";

export interface PhaseNumbers {
  readonly rps: number;
  readonly cpuUsPerCall: number;
  /** redis-server's CPU over the phase / calls answered (the load generator and the server are not in it). */
  readonly redisUsPerCall?: number;
  /** The load generator's CPU over the phase / calls answered (h2load only: the grpc-js loader's includes its start). */
  readonly loaderUsPerCall?: number;
  readonly p50Ms?: number;
  readonly p99Ms?: number;
  readonly meanMs?: number;
  readonly errors: number;
  readonly firstError?: string;
}

export interface WireRow {
  readonly server: ServerName;
  readonly op: OpName;
  readonly loader: LoaderName;
  /** One per round. */
  readonly rounds: PhaseNumbers[];
}

export interface WireReport {
  readonly rounds: number;
  readonly phaseMs: number;
  readonly h2load: string | undefined;
  readonly rows: WireRow[];
  /** 1-minute load average when the rounds started and when they ended: other work on the machine. */
  readonly loadAtStart?: number;
  readonly loadAtEnd?: number;
  readonly cores?: number;
  readonly error?: string;
}

function envInt(name: string, fallback: number, min: number, max: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}`);
  return n;
}

/** A server process and the pids whose CPU time counts as its own. */
interface Server {
  readonly name: ServerName;
  readonly port: number;
  readonly child: ChildProcess;
  readonly ops: readonly OpName[];
  /** Processes that answer calls (node:cluster workers), each needing its own warm-up. */
  readonly workers: number;
}

/** utime+stime of a process and its children (node:cluster workers), µs. */
function cpuUs(pid: number): number {
  let total = 0;
  const pids = [pid];
  try {
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/)) if (child !== "") pids.push(Number(child));
  } catch {
    // gone
  }
  for (const p of pids) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_US;
    } catch {
      // gone
    }
  }
  return total;
}

/** CPU of this process's children that have exited and been reaped (cutime+cstime), µs: an h2load run, once it is over. */
function reapedChildrenCpuUs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[13]) + Number(fields[14])) * CLOCK_TICK_US;
}

async function waitFor(child: ChildProcess, port: number, what: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${what} exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen within ${START_TIMEOUT_MS} ms`);
    await sleep(200);
  }
}

async function startAnchor(kind: "grpcjs" | "connect" | "grpcjs-redis", name: ServerName, redisUrl?: string): Promise<Server> {
  const port = await freePort();
  const args = [join(HERE, "anchors/servers.ts"), kind, String(port), ...(redisUrl === undefined ? [] : [redisUrl])];
  const child = spawn(process.execPath, ["--import", "tsx", ...args], { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  await waitFor(child, port, name);
  return { name, port, child, ops: kind === "grpcjs-redis" ? ["GetSession", "CreateSession"] : ["Health/Check"], workers: 1 };
}

/** The pid of the redis-server behind `redis` (its CPU per call is reported beside the servers'). */
async function redisPid(redis: RedisServerHandle): Promise<number> {
  const client = redis.client();
  try {
    return Number(/process_id:(\d+)/.exec(await client.info("server"))?.[1] ?? 0);
  } finally {
    client.disconnect();
  }
}

const BUILT_MAIN = join(ROOT, "dist/src/main.js");

/** `npm run build` (tsc -p tsconfig.build.json): the code production runs, compiled from the working tree. */
function buildProduction(): void {
  const run = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", join(ROOT, "tsconfig.build.json")], { cwd: ROOT, encoding: "utf8" });
  if (run.status !== 0 || !existsSync(BUILT_MAIN)) throw new Error(`npm run build failed: ${(run.stdout + run.stderr).trim().split("\n").slice(0, 5).join(" | ")}`);
}

async function startSessiond(workers: number, redis: RedisServerHandle, name: ServerName, prefix: string, env: Record<string, string> = {}, ops: readonly OpName[] = ["Health/Check", "GetSession", "CreateSession"]): Promise<Server> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, ["--max-semi-space-size=64", BUILT_MAIN], {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      WORKERS: String(workers),
      REDIS_URL: redis.url,
      KEY_PREFIX: prefix,
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString("base64")}`,
      AUDIT_LOG: "stdout",
      LOG_LEVEL: process.env["BENCH_LOG_LEVEL"] || "info",
      MAX_SESSIONS_PER_USER: "0",
      ...env,
    },
    stdio: ["ignore", devNull, "inherit"],
  });
  closeSync(devNull);
  await waitFor(child, port, name);
  // The port opens before every worker is up: wait until /healthz answers from each connection's worker.
  for (let i = 0; i < 20; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/readyz`)).ok) break;
    } catch {
      // not yet
    }
    await sleep(250);
  }
  await sleep(workers > 1 ? 3000 : 500);
  return { name, port, child, ops, workers };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

const PATHS: Record<OpName, string> = {
  "Health/Check": "/grpc.health.v1.Health/Check",
  GetSession: "/session.v1.SessionService/GetSession",
  CreateSession: "/session.v1.SessionService/CreateSession",
};

function h2loadVersion(): string | undefined {
  const run = spawnSync("h2load", ["--version"], { encoding: "utf8" });
  return run.status === 0 ? run.stdout.trim().split("\n")[0] : undefined;
}

function envelope(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** Calls per h2load phase, from the last rate seen for the same server and operation (h2load's -D mode sends no request body). */
const h2loadCalls = new Map<string, number>();

function h2loadArgs(server: Server, op: OpName, bodyFile: string, calls: number, connections: number, logFile?: string): string[] {
  return [
    "-n", String(calls), "-c", String(connections), "-m", String(CONCURRENCY / connections), "-d", bodyFile, "-H", "content-type: application/grpc", "-H", "te: trailers",
    ...(logFile === undefined ? [] : [`--log-file=${logFile}`]),
    `http://127.0.0.1:${server.port}${PATHS[op]}`,
  ];
}

/** Runs h2load with `args`; its output (stdout and stderr). */
export async function h2loadRun(args: string[]): Promise<string> {
  const child = spawn("h2load", args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  await new Promise((resolve) => child.once("exit", resolve));
  return out;
}

async function runH2load(server: Server, op: OpName, bodyFile: string, connections: number, redis: number): Promise<PhaseNumbers> {
  const key = `${server.name}|${op}|${connections}`;
  const calls = h2loadCalls.get(key) ?? 3000;
  // Warm-up, not measured. node:cluster hands connections to the workers in turn, so the warm-up opens two per
  // worker: the measured run's connections then meet warmed workers, whichever they land on.
  await h2loadRun(h2loadArgs(server, op, bodyFile, Math.min(2000, Math.ceil(calls / 4)), Math.max(connections, 2 * server.workers)));
  const before = cpuUs(server.child.pid ?? 0);
  const redisBefore = cpuUs(redis);
  const loaderBefore = reapedChildrenCpuUs();
  const logFile = join(dirname(bodyFile), `h2load-${randomUUID()}.log`);
  const out = await h2loadRun(h2loadArgs(server, op, bodyFile, calls, connections, logFile));
  const after = cpuUs(server.child.pid ?? 0);
  const redisAfter = cpuUs(redis);
  const loaderAfter = reapedChildrenCpuUs();
  const finished = /finished in ([\d.]+)(ms|s)\b/.exec(out);
  const seconds = finished === null ? Number.NaN : Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const succeeded = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
  const failed = Number(/(\d+) failed/.exec(out)?.[1] ?? 0);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1];
  const meanMs = mean === undefined ? undefined : mean.endsWith("ms") ? Number(mean.slice(0, -2)) : mean.endsWith("us") ? Number(mean.slice(0, -2)) / 1000 : Number(mean.slice(0, -1)) * 1000;
  const latency = existsSync(logFile) ? latencyQuantiles(readFileSync(logFile, "utf8")) : undefined;
  rmSync(logFile, { force: true });
  const rps = succeeded / seconds;
  if (Number.isFinite(rps) && rps > 0) h2loadCalls.set(key, Math.max(1000, Math.min(100_000, Math.round((rps * PHASE_MS) / 1000))));
  // h2load counts HTTP status only: a gRPC error answers 200 too. The grpc-js phase checks statuses.
  const perCall = (us: number): number => (succeeded === 0 ? Number.NaN : us / succeeded);
  return {
    rps,
    cpuUsPerCall: perCall(after - before),
    redisUsPerCall: perCall(redisAfter - redisBefore),
    loaderUsPerCall: perCall(loaderAfter - loaderBefore),
    ...(meanMs === undefined ? {} : { meanMs }),
    ...(latency === undefined || latency.answered === 0 ? {} : { p50Ms: latency.p50Ms, p99Ms: latency.p99Ms }),
    errors: failed,
  };
}

async function runGrpcJs(server: Server, op: OpName, requestHex: string, redis: number): Promise<PhaseNumbers> {
  const args = JSON.stringify({ port: server.port, path: PATHS[op], requestHex, concurrency: CONCURRENCY, durationMs: PHASE_MS, warmupMs: 300 });
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "grpc-js-load.ts"), args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  // Listened for from the start: a short phase can be over before the wait below is.
  const exited = new Promise((resolve) => child.once("exit", resolve));
  // CPU from the end of the warm-up: the load process starts (tsx) and warms up before it measures.
  await sleep(1500);
  const before = cpuUs(server.child.pid ?? 0);
  const redisBefore = cpuUs(redis);
  const beforeAt = performance.now();
  await exited;
  const after = cpuUs(server.child.pid ?? 0);
  const redisAfter = cpuUs(redis);
  const afterAt = performance.now();
  const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as GrpcJsLoadResult;
  const rps = result.calls / result.seconds;
  // Calls answered while CPU was counted: the measured rate over the counted window.
  const counted = rps * ((afterAt - beforeAt) / 1000);
  return {
    rps,
    cpuUsPerCall: counted > 0 ? (after - before) / counted : Number.NaN,
    redisUsPerCall: counted > 0 ? (redisAfter - redisBefore) / counted : Number.NaN,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    errors: result.errors,
    ...(result.firstError === undefined ? {} : { firstError: result.firstError }),
  };
}

export async function runWireBench(log: (line: string) => void): Promise<WireReport> {
  const h2load = h2loadVersion();
  if (h2load === undefined) log("h2load not found (apt-get install nghttp2-client): the h2load rows are skipped");
  const dir = mkdtempSync(join(tmpdir(), "wire-bench-"));
  const redis = await startRedisServer();
  const servers: Server[] = [];
  try {
    log("building sessiond as production runs it (tsc -p tsconfig.build.json)");
    buildProduction();
    servers.push(await startAnchor("grpcjs", "grpc-js (bare)"));
    servers.push(await startAnchor("connect", "connect-node (bare)"));
    servers.push(await startAnchor("grpcjs-redis", "grpc-js + ioredis (bare)", redis.url));
    const redisProcess = await redisPid(redis);
    servers.push(await startSessiond(1, redis, "sessiond WORKERS=1", "w1:"));
    servers.push(await startSessiond(2, redis, "sessiond WORKERS=2", "w2:"));
    servers.push(await startSessiond(1, redis, CACHED, "rc:", { READ_CACHE_MAX_AGE: "1s" }, ["GetSession"]));
    servers.push(await startSessiond(2, redis, CACHED_2, "rc2:", { READ_CACHE_MAX_AGE: "1s" }, ["GetSession"]));
    servers.push(await startSessiond(1, redis, STRIPPED, "st:", { ENCRYPTION_KEYS: "", ALLOW_PLAINTEXT: "true", LOG_LEVEL: "warn", AUDIT_LOG: "off" }, ["GetSession", "CreateSession"]));

    const bodies = new Map<string, { file: string; hex: string }>();
    const body = (key: string, message: Uint8Array): { file: string; hex: string } => {
      const file = join(dir, `${bodies.size}.grpc`);
      writeFileSync(file, envelope(message));
      const entry = { file, hex: Buffer.from(message).toString("hex") };
      bodies.set(key, entry);
      return entry;
    };
    body("Health/Check", toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})));
    body(
      "CreateSession",
      toBinary(
        CreateSessionRequestSchema,
        create(CreateSessionRequestSchema, { userId: "bench-user", dataSource: "warehouse-a", ttl: durationFromMs(3_600_000), metadata: { app: "web", ip: "203.0.113.7", n: 100 } }),
      ),
    );
    // The floor answers any GetSession with the one session it holds: it does not read the request.
    body("GetSession@grpc-js + ioredis (bare)", toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId: randomUUID() })));
    for (const server of servers.filter((s) => s.name.startsWith("sessiond"))) {
      const client = createSessionClient(`http://127.0.0.1:${server.port}`, { timeoutMs: 10_000 });
      const { session } = await client.createSession({ userId: "bench-get", dataSource: "warehouse-a", ttl: durationFromMs(3_600_000), metadata: { app: "web", ip: "203.0.113.7", n: 100 } });
      body(`GetSession@${server.name}`, toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId: session?.sessionId ?? "" })));
    }
    const bodyFor = (server: Server, op: OpName): { file: string; hex: string } => {
      const entry = bodies.get(op === "GetSession" ? `GetSession@${server.name}` : op);
      if (entry === undefined) throw new Error(`no request body for ${op}`);
      return entry;
    };

    const rows = new Map<string, WireRow>();
    const loaders: LoaderName[] = h2load === undefined ? ["grpc-js 64"] : ["h2load 1×64", "h2load 4×16", "grpc-js 64"];
    const loadAtStart = loadavg()[0];
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order of servers between rounds, so that drift does not always favour the same one.
      const order = round % 2 === 0 ? servers : [...servers].reverse();
      for (const loader of loaders) {
        for (const server of order) {
          for (const op of server.ops) {
            const numbers =
              loader === "grpc-js 64"
                ? await runGrpcJs(server, op, bodyFor(server, op).hex, redisProcess)
                : await runH2load(server, op, bodyFor(server, op).file, loader === "h2load 1×64" ? 1 : 4, redisProcess);
            const key = `${server.name}|${op}|${loader}`;
            const row = rows.get(key) ?? { server: server.name, op, loader, rounds: [] };
            row.rounds.push(numbers);
            rows.set(key, row);
            log(`round ${round + 1} ${loader.padEnd(12)} ${server.name.padEnd(20)} ${op.padEnd(13)} ${Math.round(numbers.rps)} calls/s, ${Math.round(numbers.cpuUsPerCall)} µs CPU/call${numbers.errors > 0 ? `, ${numbers.errors} errors (${numbers.firstError ?? "h2load"})` : ""}`);
          }
        }
      }
    }
    return { rounds: ROUNDS, phaseMs: PHASE_MS, h2load, rows: [...rows.values()], loadAtStart, loadAtEnd: loadavg()[0], cores: availableCores() };
  } catch (error) {
    return { rounds: ROUNDS, phaseMs: PHASE_MS, h2load, rows: [], error: error instanceof Error ? error.message : String(error) };
  } finally {
    for (const server of servers) await stop(server.child);
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
const spread = (xs: readonly number[], digits = 0): string => {
  const f = xs.filter((x) => Number.isFinite(x));
  if (f.length === 0) return "n/a";
  return `${Math.min(...f).toFixed(digits)}–${Math.max(...f).toFixed(digits)}`;
};

/** Per round, `num`'s value over `den`'s. */
function ratios(report: WireReport, num: [ServerName, OpName], den: [ServerName, OpName], loader: LoaderName, field: "rps" | "cpuUsPerCall"): number[] {
  const find = (server: ServerName, op: OpName): WireRow | undefined => report.rows.find((r) => r.server === server && r.op === op && r.loader === loader);
  const a = find(...num);
  const b = find(...den);
  if (a === undefined || b === undefined) return [];
  return a.rounds.map((x, i) => x[field] / (b.rounds[i]?.[field] ?? Number.NaN));
}

export interface WireTarget {
  readonly what: string;
  readonly loader: LoaderName;
  readonly median: number;
  readonly spread: string;
  readonly goal: number;
  readonly atMost: boolean;
  readonly pass: boolean;
  /** The medians behind the ratio, e.g. "210 / 86 µs per call". */
  readonly detail: string;
}

/** The issue's targets, per sessiond variant and load: ratios to the bare grpc-js server's Health/Check in the same round. */
export function wireTargets(report: WireReport): WireTarget[] {
  const out: WireTarget[] = [];
  const loaders: LoaderName[] = report.h2load === undefined ? ["grpc-js 64"] : ["h2load 1×64", "h2load 4×16", "grpc-js 64"];
  const check: [ServerName, OpName] = ["grpc-js (bare)", "Health/Check"];
  const floor: [ServerName, OpName] = ["grpc-js + ioredis (bare)", "CreateSession"];
  const getFloor: [ServerName, OpName] = ["grpc-js + ioredis (bare)", "GetSession"];
  const reading = Number.POSITIVE_INFINITY;
  for (const workers of ["sessiond WORKERS=1", "sessiond WORKERS=2", CACHED, CACHED_2] as const) {
    for (const loader of loaders) {
      const target = (what: string, op: OpName, field: "rps" | "cpuUsPerCall", goal: number, atMost: boolean, anchor = check, server: ServerName = workers): WireTarget => {
        const xs = ratios(report, [server, op], anchor, loader, field);
        const m = median(xs);
        const of = (name: ServerName, o: OpName): number =>
          median(report.rows.find((r) => r.server === name && r.op === o && r.loader === loader)?.rounds.map((x) => x[field]) ?? []);
        const detail = `${Math.round(of(server, op))} / ${Math.round(of(...anchor))} ${field === "rps" ? "calls/s" : "µs per call"}`;
        return { what: `${server}: ${what}`, loader, median: m, spread: spread(xs, 2), goal, atMost, pass: Number.isFinite(m) && (atMost ? m <= goal : m >= goal), detail };
      };
      out.push(target("GetSession / bare grpc-js Check, throughput", "GetSession", "rps", WIRE_TARGETS.getOverCheck, false));
      if (workers === CACHED || workers === CACHED_2) {
        out.push(target("GetSession / bare grpc-js Check, server CPU per call", "GetSession", "cpuUsPerCall", WIRE_TARGETS.cpuOverAnchor, true));
        continue;
      }
      out.push(target("CreateSession / bare grpc-js Check, throughput", "CreateSession", "rps", WIRE_TARGETS.createOverCheck, false));
      out.push(target("GetSession / bare grpc-js Check, server CPU per call", "GetSession", "cpuUsPerCall", WIRE_TARGETS.cpuOverAnchor, true));
      out.push(target("CreateSession / bare grpc-js Check, server CPU per call (no target; for reading)", "CreateSession", "cpuUsPerCall", reading, true));
      out.push(target("GetSession / bare grpc-js + ioredis get, throughput (no target; for reading)", "GetSession", "rps", reading, false, getFloor));
      out.push(target("GetSession / bare grpc-js + ioredis get, server CPU per call (no target; for reading)", "GetSession", "cpuUsPerCall", reading, true, getFloor));
      out.push(target("CreateSession / bare grpc-js + ioredis create, throughput (no target; for reading)", "CreateSession", "rps", reading, false, floor));
      out.push(target("CreateSession / bare grpc-js + ioredis create, server CPU per call (no target; for reading)", "CreateSession", "cpuUsPerCall", reading, true, floor));
      out.push(target("Health/Check / bare grpc-js Check, server CPU per call", "Health/Check", "cpuUsPerCall", WIRE_TARGETS.cpuOverAnchor, true));
      // The floors' and the stripped service's own ratios, once per load (they do not depend on the sessiond variant).
      if (workers === "sessiond WORKERS=1") {
        out.push(target("GetSession / bare grpc-js Check, throughput (no target; for reading)", "GetSession", "rps", reading, false, check, getFloor[0]));
        out.push(target("CreateSession / bare grpc-js Check, throughput (no target; for reading)", "CreateSession", "rps", reading, false, check, floor[0]));
        out.push(target("GetSession / bare grpc-js Check, throughput (no target; for reading)", "GetSession", "rps", reading, false, check, STRIPPED));
        out.push(target("CreateSession / bare grpc-js Check, throughput (no target; for reading)", "CreateSession", "rps", reading, false, check, STRIPPED));
        out.push(target("GetSession / bare grpc-js + ioredis get, server CPU per call (no target; for reading)", "GetSession", "cpuUsPerCall", reading, true, getFloor, STRIPPED));
        out.push(target("CreateSession / bare grpc-js + ioredis create, server CPU per call (no target; for reading)", "CreateSession", "cpuUsPerCall", reading, true, floor, STRIPPED));
      }
    }
  }
  return out;
}

export function renderWire(report: WireReport): string {
  const lines: string[] = [];
  lines.push("## Wire cost against bare Node gRPC servers (bench/wire-bench.ts)", "");
  if (report.error !== undefined) {
    lines.push(`The wire benchmark failed: ${report.error}`, "");
    return lines.join("\n");
  }
  lines.push(
    `Method: every server in a process of its own on this machine, one private redis-server; ${report.rounds} interleaved rounds ` +
      `(server order reversed every other round), about ${report.phaseMs / 1000} s per phase after an unmeasured warm-up (h2load: at least two connections per worker, so that whichever worker a measured connection lands on is warm); loads: h2load (${report.h2load ?? "not installed: skipped"}) ` +
      "with 1 connection × 64 streams and with 4 connections × 16 streams (node:cluster spreads connections, not calls: WORKERS=2 needs more than one), and a @grpc/grpc-js client with 64 calls in flight on one channel (bench/grpc-js-load.ts). " +
      "Server CPU per call = utime+stime from /proc/PID/stat (primary + workers) over the phase / calls answered; redis-server's CPU per call likewise. " +
      "Latency p50 and p99 of the answered calls: the grpc-js load times each call, h2load logs each request (--log-file, bench/h2load-latency.ts). " +
      "A third anchor, a bare grpc-js server whose CreateSession makes one auto-pipelined ioredis call of a Lua function (a hash with its expiry, a user's sorted set, a capped event stream) and whose GetSession makes one HGETALL and answers the stored bytes (no validation, encryption, caps, logs or audit), is the floor of a Redis-backed create and get on this machine. " +
      "Ratios are taken within a round (same load, same minute), median over rounds, spread min–max. " +
      "sessiond: the production build (dist/, `npm run build`) with the production Node flags, Redis store, metadata encryption on, logs and audit records written (to /dev/null); " +
      `"${CACHED}" and "${CACHED_2}" are the same with GetSession answered from the process's copy of the session (README, "Reading from a copy"; every call still authenticated, logged, audited and counted), measured for GetSession only; "${STRIPPED}" is sessiond WORKERS=1 with metadata encryption, the RPC log line and the audit record turned off, for reading only (what every setting keeps of a call). ` +
      `Machine: ${report.cores ?? "?"} cores; 1-minute load average ${report.loadAtStart?.toFixed(1) ?? "?"} when the rounds started, ${report.loadAtEnd?.toFixed(1) ?? "?"} when they ended ` +
      "(CPU time per call grows with other work on the machine: caches and cores are shared; the ratios within a round are the figures to trust).",
    "",
    "Read the figures with this in mind: the bare grpc-js server answers Health/Check from memory, while GetSession and CreateSession each make a " +
      "Redis round trip (a Lua script), decrypt or encrypt metadata and write an RPC log line and an audit record; the throughput ratios under h2load " +
      "measure a server saturated by one connection, so they follow the CPU-per-call ratio. " +
      `WORKERS=2 on ${report.cores ?? "?"} cores is not a fair throughput test: the two workers, the primary, redis-server and the load generator share the same cores, ` +
      "so a second worker can only take CPU from the load generator and redis-server; its CPU per call (primary and workers together) is the figure that carries over to a machine with cores to spare.",
    "",
  );
  lines.push("### Targets", "", "| target | load | median | spread over rounds | medians (sessiond / bare) | goal | pass |", "|---|---|---|---|---|---|---|");
  for (const t of wireTargets(report)) {
    const goal = Number.isFinite(t.goal) ? `${t.atMost ? "≤" : "≥"} ${t.goal}×` : "";
    const pass = Number.isFinite(t.goal) ? (t.pass ? "yes" : "**no**") : "";
    lines.push(`| ${t.what} | ${t.loader} | ${t.median.toFixed(2)}× | ${t.spread} | ${t.detail} | ${goal} | ${pass} |`);
  }
  lines.push("");
  lines.push(...renderCreateBudget(report, WIRE_TARGETS.createOverCheck));
  lines.push("### Per server and operation (median over rounds; spread min–max)", "");
  lines.push("| load | server | operation | calls/s | spread | server CPU µs/call | spread | redis-server CPU µs/call | h2load CPU µs/call | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|---|---|---|---|---|");
  for (const row of report.rows) {
    const rps = row.rounds.map((r) => r.rps);
    const cpu = row.rounds.map((r) => r.cpuUsPerCall);
    const redisCpu = median(row.rounds.map((r) => r.redisUsPerCall ?? Number.NaN));
    const loaderCpu = median(row.rounds.map((r) => r.loaderUsPerCall ?? Number.NaN));
    const p50 = row.rounds.map((r) => r.p50Ms ?? Number.NaN);
    const p99 = row.rounds.map((r) => r.p99Ms ?? Number.NaN);
    const mean = row.rounds.map((r) => r.meanMs ?? Number.NaN);
    const errors = row.rounds.reduce((n, r) => n + r.errors, 0);
    // An h2load phase whose request log could not be read has h2load's mean only.
    const latency = Number.isFinite(median(p50)) ? `${median(p50).toFixed(1)} | ${median(p99).toFixed(1)}` : `mean ${median(mean).toFixed(1)} | n/a (h2load)`;
    lines.push(`| ${row.loader} | ${row.server} | ${row.op} | ${Math.round(median(rps))} | ${spread(rps)} | ${Math.round(median(cpu))} | ${spread(cpu)} | ${Number.isFinite(redisCpu) ? Math.round(redisCpu) : "n/a"} | ${Number.isFinite(loaderCpu) ? Math.round(loaderCpu) : "n/a"} | ${latency} | ${errors} |`);
  }
  lines.push("");
  return lines.join("\n");
}

await runAsBenchMain(import.meta.url, runWireBench, renderWire);
