/**
 * The processes a benchmark run starts: load generators, service stacks and
 * one-shot bench scripts, tracked so that a signal can take them all down.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as os from "node:os";
import { join } from "node:path";
import type { Redis } from "ioredis";
import { startRedisServer, type RedisServerHandle } from "../test/support/redis-server.js";
import { oneLine } from "./format.js";
import type { LoadReply, LoadRequest } from "./load-generator.js";
import type { PhaseSample, PhaseSpec } from "./phase.js";
import { ServiceProcess } from "./service-process.js";
import { FILL_TIMEOUT_MS, HERE, PHASE_SLACK_MS, ROOT } from "./settings.js";

/** Drives a load-generator child process, one phase at a time. */
export class LoadProcess {
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

/** Child processes the run has started and not stopped yet, so a signal can take them all down. */
export const running = new Set<{ stop(): Promise<void> }>();

/** One variant's private set-up: its redis-server, the service with its Node flags, and a load generator. */
export interface Stack {
  readonly label: string;
  readonly flags: readonly string[];
  readonly redis: RedisServerHandle;
  readonly redisClient: Redis;
  readonly service: ServiceProcess;
  readonly load: LoadProcess;
}

export async function startStack(label: string, flags: readonly string[], logLevel: string): Promise<Stack> {
  const redis = await startRedisServer();
  running.add(redis);
  const service = await ServiceProcess.start(flags, {
    REDIS_URL: redis.url,
    LOG_LEVEL: logLevel,
    // Audit records as in production (stdout), which goes to /dev/null like the logs.
    AUDIT_LOG: "stdout",
    // As in production: metadata sealed at rest, with a key that lives for this run only.
    ENCRYPTION_KEYS: `bench:${randomBytes(32).toString("base64")}`,
  });
  running.add(service);
  const load = await LoadProcess.start(service.url, redis.url);
  running.add(load);
  return { label, flags, redis, redisClient: redis.client(), service, load };
}

export async function stopStack(stack: Stack): Promise<void> {
  for (const part of [stack.load, stack.service]) {
    await part.stop();
    running.delete(part);
  }
  stack.redisClient.disconnect();
  await stack.redis.stop();
  running.delete(stack.redis);
}

/**
 * Runs a bench script in its own process, passes its stdout lines on (indented) and returns its last line
 * (a JSON report) when it exited 0; otherwise the error and, as `partial`, the last JSON line it printed
 * before it failed or was killed (a script that reports as it goes loses only its unfinished step).
 */
export async function runScript(script: string, args: readonly string[], env: Readonly<Record<string, string>>, timeoutMs: number): Promise<{ last?: string; error?: string; partial?: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, script), ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const handle = { stop: async (): Promise<void> => void child.kill("SIGKILL") };
  running.add(handle);
  let out = "";
  let err = "";
  let shown = 0;
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    // Progress for the person watching: every complete line but the JSON.
    const end = out.lastIndexOf("\n");
    for (const line of out.slice(shown, end + 1).split("\n")) {
      if (line.trim() !== "" && !line.startsWith("{")) console.log(`    ${line}`);
    }
    shown = Math.max(shown, end + 1);
  });
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  running.delete(handle);
  const lines = out.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const last = lines.at(-1);
  if (code === 0 && last?.startsWith("{") === true) return { last };
  const all = (err + out).split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const reason = all.find((l) => /\w*Error\b:/.test(l)) ?? all.find((l) => /error/i.test(l)) ?? all.at(-1) ?? "no output";
  const error = `bench/${script} exited ${code === null ? `(killed: timeout of ${(timeoutMs / 1000).toFixed(0)} s)` : code}: ${oneLine(reason)}`;
  const partial = lines.findLast((l) => l.startsWith("{"));
  return partial === undefined ? { error } : { error, partial };
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly redis: string;
  readonly os: string;
  readonly loadAvg: string;
}

export function machineInfo(): MachineInfo {
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
