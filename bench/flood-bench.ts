/**
 * The flood benchmark: the p99 of authenticated GetSession calls and the
 * service's peak RSS with no attack, during a 20,000-idle-connection flood,
 * during a 20,000-stream flood, and after both, against the service (its own
 * process, default limits, RedisStore, API keys). Prints progress lines, then
 * one JSON line (FloodReport) for bench/run.ts.
 *
 * Environment: FLOOD_BENCH_NODE_FLAGS (the service's Node flags),
 * FLOOD_BENCH_DURATION_MS (measured time per phase, default 5000).
 */
import { spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import * as http from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { metricValue } from "../test/support/attack.js";
import { clientWith, tempDir, writeApiKeysFile } from "../test/support/auth.js";
import { startRedisServer } from "../test/support/redis-server.js";
import type { FloodPhase, FloodReport } from "./flood-report.js";
import { ServiceProcess } from "./service-process.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const DURATION_MS = Number(process.env["FLOOD_BENCH_DURATION_MS"] ?? "5000");
const CONCURRENCY = 8;
const IDLE_CONNECTIONS = 20_000;
const STREAMS = 20_000;
/** One attacker process holds at most this many sockets (the open-file limit is per process). */
const SOCKETS_PER_ATTACKER = 10_000;
const NODE_FLAGS = (process.env["FLOOD_BENCH_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== "");

interface Attacker {
  readonly report: Record<string, unknown>;
  stop(): Promise<void>;
}

/** Starts bench/flood-client.ts and waits for its report line. */
async function attack(args: readonly string[]): Promise<Attacker> {
  const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "flood-client.ts"), ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const report = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      const line = out.split("\n").find((l) => l.startsWith("{"));
      if (line !== undefined) resolve(JSON.parse(line) as Record<string, unknown>);
    });
    child.once("exit", (code) => reject(new Error(`flood-client exited (${code}) before its report`)));
  });
  return {
    report,
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** GET /healthz on a new connection: "200 in N ms" or why not. */
function healthz(url: string): Promise<string> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get(`${url}/healthz`, { agent: false, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(`${res.statusCode} in ${Math.round(performance.now() - started)} ms`));
    });
    req.on("timeout", () => req.destroy(new Error("no answer in 5 s")));
    req.on("error", (error) => resolve(`failed: ${error.message}`));
  });
}

async function main(): Promise<void> {
  const redis = await startRedisServer();
  const key = `k-${randomUUID()}`;
  const service = await ServiceProcess.start(NODE_FLAGS, {
    REDIS_URL: redis.url,
    ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}`,
    API_KEYS_FILE: writeApiKeysFile(tempDir(), [{ id: "bench", key, tenant: "bench", scopes: ["read", "write"] }]),
  });
  const attackers: Attacker[] = [];
  try {
    const client = clientWith(service.url, `Bearer ${key}`, 10_000);
    const sessionId = (await client.createSession({ userId: "bench", dataSource: "flood" })).session?.sessionId ?? "";
    const until = Date.now() + 1000;
    while (Date.now() < until) await client.getSession({ sessionId });

    const measure = async (name: string, attackText: string): Promise<FloodPhase> => {
      service.peakRss = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          await service.usage().catch(() => undefined);
          await sleep(200);
        }
      })();
      const latencies: number[] = [];
      let failed = 0;
      let firstError: string | undefined;
      const end = Date.now() + DURATION_MS;
      const health = sleep(DURATION_MS / 2).then(() => healthz(service.url));
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (Date.now() < end) {
            const started = performance.now();
            try {
              await client.getSession({ sessionId });
              latencies.push(performance.now() - started);
            } catch (error) {
              failed += 1;
              firstError ??= String(error).slice(0, 80);
            }
          }
        }),
      );
      sampling = false;
      await sampler;
      latencies.sort((a, b) => a - b);
      const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
      const phase: FloodPhase = {
        name,
        attack: attackText,
        calls: latencies.length + failed,
        failed,
        ...(firstError === undefined ? {} : { firstError }),
        p50Ms: at(0.5),
        p99Ms: at(0.99),
        peakRss: service.peakRss,
        healthz: await health,
      };
      console.log(`${name}: p50 ${phase.p50Ms.toFixed(2)} ms, p99 ${phase.p99Ms.toFixed(2)} ms, ${phase.calls} calls (${failed} failed), peak RSS ${(phase.peakRss / 2 ** 20).toFixed(0)} MiB, /healthz ${phase.healthz}`);
      return phase;
    };

    const phases: FloodPhase[] = [];
    phases.push(await measure("no flood", "nothing"));

    // 20,000 idle connections from 40 addresses (500 each, within the per-address cap): the total cap decides.
    const addresses = Array.from({ length: 40 }, (_, i) => `127.0.0.${i + 2}`);
    const perAttacker = Math.ceil(IDLE_CONNECTIONS / SOCKETS_PER_ATTACKER);
    const share = addresses.length / perAttacker;
    for (let i = 0; i < perAttacker; i++) {
      attackers.push(await attack(["idle", service.url, String(SOCKETS_PER_ATTACKER), addresses.slice(i * share, (i + 1) * share).join(",")]));
    }
    // The service's own count (the attacker's view lags: the closes of evicted connections are still arriving).
    const held = await metricValue(service.url, "sessiond_open_connections").catch(() => Number.NaN);
    console.log(`idle flood in place: the service holds ${held} connections of the ${IDLE_CONNECTIONS} opened`);
    phases.push(await measure("20,000-idle-connection flood", `${IDLE_CONNECTIONS.toLocaleString("en")} opened; the service holds ${held.toLocaleString("en")}`));
    for (const a of attackers.splice(0)) await a.stop();
    await sleep(2000);

    const streams = await attack(["streams", service.url, String(STREAMS), "4"]);
    attackers.push(streams);
    const open = await metricValue(service.url, "sessiond_long_lived_streams").catch(() => Number.NaN);
    console.log(`stream flood in place: ${open} open on the service, ${String(streams.report["refused"])} refused`);
    phases.push(await measure("20,000-stream flood (Health/Watch, no credentials, 4 connections)", `${STREAMS.toLocaleString("en")} opened; ${open.toLocaleString("en")} open on the service, the rest refused`));
    for (const a of attackers.splice(0)) await a.stop();
    await sleep(2000);

    phases.push(await measure("after both floods", "nothing"));
    const report: FloodReport = { concurrency: CONCURRENCY, durationMs: DURATION_MS, phases };
    console.log(JSON.stringify(report));
  } finally {
    for (const a of attackers) await a.stop();
    await service.stop();
    await redis.stop();
  }
}

await main();
