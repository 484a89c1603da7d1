/**
 * GetSession and CreateSession of two sessiond builds side by side (issue 10:
 * script calls sent together, fcall-batcher.ts), next to a bare grpc-js
 * server's Health/Check in the same rounds.
 *
 *   npm run build; (cd <other checkout> && npm run build)
 *   node --import tsx bench/fcall-batch-ab.ts <other checkout> [rounds] [get calls] [create calls] [loaders: h2load,grpc-js]
 *
 * One private redis-server; each build started as production runs it
 * (WORKERS=1, dist/src/main.js, encryption on, logs to /dev/null) with its own
 * key prefix. Each round runs every (server, operation, load) phase in turn,
 * the order reversed every other round. Loads: h2load (1 connection, 64
 * streams) and a @grpc/grpc-js client (64 calls in flight). Per phase: calls/s,
 * server CPU per call and redis-server CPU per call (utime+stime from
 * /proc/PID/stat). Prints each phase, then per-round ratios' medians and
 * spreads: this checkout / the other, and each against the anchor.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { HealthCheckRequestSchema } from "../gen/grpc/health/v1/health_pb.js";
import { CreateSessionRequestSchema, GetSessionRequestSchema } from "../gen/session/v1/session_pb.js";
import { createSessionClient } from "@sessiond/client";
import { freePort, startRedisServer } from "../test/support/redis-server.js";
import type { GrpcJsLoadResult } from "./grpc-js-load.js";
import { waitForServiceReady } from "./service-ready.js";
import { h2loadRun } from "./wire-bench.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const other = process.argv[2];
if (other === undefined) throw new Error("usage: node --import tsx bench/fcall-batch-ab.ts <other checkout> [rounds] [get calls] [create calls]");
const ROUNDS = Number(process.argv[3] ?? 5);
const CALLS = { get: Number(process.argv[4] ?? 8000), create: Number(process.argv[5] ?? 4000) };
const LOADERS = (process.argv[6] ?? "h2load,grpc-js").split(",").filter((l): l is "h2load" | "grpc-js" => l === "h2load" || l === "grpc-js");
const GRPCJS_MS = 3000;
const CLOCK_TICK_US = 10_000;

interface Server {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
}

function cpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * CLOCK_TICK_US;
}

const redis = await startRedisServer();
const raw = redis.client();
const redisPid = Number(/process_id:(\d+)/.exec(await raw.info("server"))?.[1]);

async function startSessiond(name: string, root: string, prefix: string): Promise<Server> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, ["--max-semi-space-size=64", join(root, "dist/src/main.js")], {
    cwd: root,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      WORKERS: "1",
      REDIS_URL: redis.url,
      KEY_PREFIX: prefix,
      ENCRYPTION_KEYS: `bench:${randomBytes(32).toString("base64")}`,
      AUDIT_LOG: "stdout",
      LOG_LEVEL: "info",
      MAX_SESSIONS_PER_USER: "0",
    },
    stdio: ["ignore", devNull, "inherit"],
  });
  closeSync(devNull);
  await waitForServiceReady(child, `http://127.0.0.1:${port}`);
  return { name, port, pid: child.pid ?? 0, child };
}

async function startAnchor(): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "anchors/servers.ts"), "grpcjs", String(port)], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((ready, failed) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("ready")) ready();
    });
    child.once("exit", (code) => failed(new Error(`the anchor exited with code ${code}`)));
  });
  return { name: "grpc-js (bare)", port, pid: child.pid ?? 0, child };
}

function envelope(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

interface Phase {
  readonly rps: number;
  readonly serverUs: number;
  readonly redisUs: number;
  /** FCALLs Redis ran per call answered (warm-up included: both sides). */
  readonly fcalls: number;
}

async function fcallCount(): Promise<number> {
  return Number(/^cmdstat_fcall:calls=(\d+)/m.exec(await raw.info("commandstats"))?.[1] ?? 0);
}

async function h2load(server: Server, path: string, body: string, calls: number): Promise<Phase> {
  const args = (n: number): string[] => ["-n", String(n), "-c", "1", "-m", "64", "-d", body, "-H", "content-type: application/grpc", "-H", "te: trailers", `http://127.0.0.1:${server.port}${path}`];
  await h2loadRun(args(Math.ceil(calls / 4)));
  const before = [cpuUs(server.pid), cpuUs(redisPid), await fcallCount()];
  const out = await h2loadRun(args(calls));
  const after = [cpuUs(server.pid), cpuUs(redisPid), await fcallCount()];
  const finished = /finished in ([\d.]+)(ms|s)\b/.exec(out);
  const seconds = finished === null ? Number.NaN : Number(finished[1]) / (finished[2] === "ms" ? 1000 : 1);
  const succeeded = Number(/(\d+) succeeded/.exec(out)?.[1] ?? 0);
  const per = (i: number): number => ((after[i] as number) - (before[i] as number)) / succeeded;
  return { rps: succeeded / seconds, serverUs: per(0), redisUs: per(1), fcalls: per(2) };
}

async function grpcJs(server: Server, path: string, hex: string): Promise<Phase> {
  const args = JSON.stringify({ port: server.port, path, requestHex: hex, concurrency: 64, durationMs: GRPCJS_MS, warmupMs: 300 });
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "grpc-js-load.ts"), args], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  await sleep(1500);
  const before = [cpuUs(server.pid), cpuUs(redisPid), await fcallCount()];
  const at = performance.now();
  await new Promise((done) => child.once("exit", done));
  const after = [cpuUs(server.pid), cpuUs(redisPid), await fcallCount()];
  const seconds = (performance.now() - at) / 1000;
  const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as GrpcJsLoadResult;
  if (result.errors > 0) throw new Error(`${server.name} ${path}: ${result.errors} errors, first: ${result.firstError}`);
  const rps = result.calls / result.seconds;
  const counted = rps * seconds;
  const per = (i: number): number => ((after[i] as number) - (before[i] as number)) / counted;
  return { rps, serverUs: per(0), redisUs: per(1), fcalls: per(2) };
}

const dir = mkdtempSync(join(tmpdir(), "fcall-batch-ab-"));
const file = (name: string, message: Uint8Array): { path: string; hex: string } => {
  const path = join(dir, name);
  writeFileSync(path, envelope(message));
  return { path, hex: Buffer.from(message).toString("hex") };
};
const metadata = { app: "web", ip: "203.0.113.7", n: 100 };
const check = file("check", toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, {})));
const createBody = file("create", toBinary(CreateSessionRequestSchema, create(CreateSessionRequestSchema, { userId: "bench-user", dataSource: "warehouse-a", ttl: durationFromMs(3_600_000), metadata })));

const anchor = await startAnchor();
const builds = [await startSessiond("this", ROOT, "a:"), await startSessiond("other", resolve(other), "b:")];
const getBodies = new Map<string, { path: string; hex: string }>();
for (const server of builds) {
  const client = createSessionClient(`http://127.0.0.1:${server.port}`, { timeoutMs: 10_000 });
  const { session } = await client.createSession({ userId: "bench-get", dataSource: "warehouse-a", ttl: durationFromMs(3_600_000), metadata });
  getBodies.set(server.name, file(`get-${server.name}`, toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId: session?.sessionId ?? "" }))));
}

type Key = string;
const results = new Map<Key, Phase[]>();
const add = (key: Key, phase: Phase): void => {
  results.set(key, [...(results.get(key) ?? []), phase]);
  console.log(`${key}: ${phase.rps.toFixed(0)}/s, server ${phase.serverUs.toFixed(0)} µs/call, redis ${phase.redisUs.toFixed(1)} µs/call, ${phase.fcalls.toFixed(2)} FCALL/call`);
};
const GET = "/session.v1.SessionService/GetSession";
const CREATE = "/session.v1.SessionService/CreateSession";
const CHECK = "/grpc.health.v1.Health/Check";
const loadStart = loadavg()[0];
try {
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const loader of LOADERS) {
      const phase = (server: Server, path: string, body: { path: string; hex: string }, calls: number): Promise<Phase> =>
        loader === "h2load" ? h2load(server, path, body.path, calls) : grpcJs(server, path, body.hex);
      add(`${loader} anchor Check`, await phase(anchor, CHECK, check, CALLS.get));
      for (const server of order) add(`${loader} ${server.name} Get`, await phase(server, GET, getBodies.get(server.name) ?? check, CALLS.get));
      for (const server of order) add(`${loader} ${server.name} Create`, await phase(server, CREATE, createBody, CALLS.create));
    }
  }
} finally {
  for (const server of [anchor, ...builds]) server.child.kill("SIGTERM");
  raw.disconnect();
  await redis.stop();
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
function ratio(a: Key, b: Key, field: keyof Phase): string {
  const xs = (results.get(a) ?? []).map((p, i) => p[field] / ((results.get(b) ?? [])[i]?.[field] ?? Number.NaN));
  return `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
}
console.log(`\nload average ${loadStart?.toFixed(1)} at start, ${loadavg()[0]?.toFixed(1)} at end; ${ROUNDS} rounds; median (min–max) of per-round ratios`);
for (const loader of LOADERS) {
  for (const op of ["Get", "Create"]) {
    const a = `${loader} this ${op}`;
    const b = `${loader} other ${op}`;
    const anchorKey = `${loader} anchor Check`;
    const med = (key: Key, field: keyof Phase): string => median((results.get(key) ?? []).map((p) => p[field])).toFixed(field === "redisUs" ? 1 : 0);
    console.log(
      `${loader} ${op}: this ${med(a, "rps")}/s ${med(a, "serverUs")} µs redis ${med(a, "redisUs")} µs | other ${med(b, "rps")}/s ${med(b, "serverUs")} µs redis ${med(b, "redisUs")} µs | ` +
        `this/other rps ${ratio(a, b, "rps")} cpu ${ratio(a, b, "serverUs")} redis ${ratio(a, b, "redisUs")} | ` +
        `vs anchor: this rps ${ratio(a, anchorKey, "rps")} cpu ${ratio(a, anchorKey, "serverUs")}; other rps ${ratio(b, anchorKey, "rps")} cpu ${ratio(b, anchorKey, "serverUs")}`,
    );
  }
}
