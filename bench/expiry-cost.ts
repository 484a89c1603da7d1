/**
 * What an expiry costs, and where its lag comes from, on one Redis or a
 * 3-primary loopback cluster (REDIS_PARTITIONS=16):
 *
 *   MODE=cluster|single LIVE=5000 RATE=500 SECONDS=6 PROBE=store|grpc node --import tsx bench/expiry-cost.ts
 *
 * LIVE sessions are loaded through RedisStore, then the service (src/main.ts,
 * its own process) runs while probe sessions come due at RATE/s for SECONDS
 * s, created by this process straight through RedisStore (PROBE=store: the
 * service only expires and delivers) or over gRPC through the service
 * (PROBE=grpc, as bench/cluster-bench.ts does). A remote watcher of EXPIRED
 * records arrival − expire_time (lag), the event's log time − expire_time
 * (the scheduler's share) and arrival − log time (the tail and delivery).
 * Per probe: the service's CPU (/proc), the primaries' CPU (INFO cpu), the
 * scripts (FCALL, EVALSHA and EVAL calls) and all commands they ran (INFO
 * commandstats), which do not depend on the machine's load as the lag does.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionClient } from "@sessiond/client";
import type { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { freePort, startRedisServer } from "../test/support/redis-server.js";
import { startRedisCluster } from "../test/support/redis-cluster.js";
import { scheduleExpiries } from "./expiry-schedule.js";
import { watchExpired } from "./expired-watcher.js";
import { waitForServiceReady } from "./service-ready.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const MODE = process.env["MODE"] ?? "cluster";
const LIVE = Number(process.env["LIVE"] ?? 5000);
const RATE = Number(process.env["RATE"] ?? 500);
const SECONDS = Number(process.env["SECONDS"] ?? 6);
const PROBE = process.env["PROBE"] ?? "store";
const LIMITS = { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000, maxSessionsPerUser: 0 };
const q = (s: number[], p: number): number => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
const st = (v: number[]): string => {
  const s = [...v].sort((a, b) => a - b);
  return `n=${s.length} p50=${q(s, 0.5)} p90=${q(s, 0.9)} p99=${q(s, 0.99)} max=${s.at(-1)}`;
};

/** User + system CPU of a process so far, ms (/proc, clock ticks of 10 ms). */
function procCpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}
/** Per command: calls and usec summed over the primaries, with their CPU ("cpu") and the service's ("svc"), ms. */
async function cmdstats(clients: Redis[]): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const c of clients) {
    const info = await c.info("cpu");
    const u = /used_cpu_user:([\d.]+)/.exec(info), y = /used_cpu_sys:([\d.]+)/.exec(info);
    m.set("cpu", (m.get("cpu") ?? 0) + 1000 * (Number(u?.[1]) + Number(y?.[1])));
  }
  m.set("svc", procCpuMs(child.pid!));
  for (const c of clients) {
    const info = await c.info("commandstats");
    for (const line of info.split("\n")) {
      const r = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
      if (r) {
        m.set(`${r[1]}.calls`, (m.get(`${r[1]}.calls`) ?? 0) + Number(r[2]));
        m.set(`${r[1]}.usec`, (m.get(`${r[1]}.usec`) ?? 0) + Number(r[3]));
      }
    }
  }
  return m;
}

const single = MODE === "single" ? await startRedisServer() : undefined;
const cluster = MODE === "cluster" ? await startRedisCluster({ primaries: 3, replicas: 0 }) : undefined;
const raw: Redis[] = single ? [single.client()] : cluster!.nodes.map((n) => cluster!.client(n));
const store = single
  ? new RedisStore({ url: single.url, keyPrefix: "sd:", limits: LIMITS, commandTimeoutMs: 30_000 })
  : new RedisStore({ url: "", cluster: { nodes: cluster!.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })) }, partitions: 16, keyPrefix: "sd:", limits: LIMITS, commandTimeoutMs: 30_000 });
await store.ping();
let next = 0;
await Promise.all(Array.from({ length: 64 }, async () => {
  while (next < LIVE) {
    const i = next++;
    await store.create({ tenant: "default", userId: `user-${i % 10000}`, dataSource: `source-${i % 10}`, accessLevel: "read", ttlMs: 7_200_000 + (i % 3600) * 1000, metadata: "{}", requestId: "" });
  }
}));
console.log(`loaded ${LIVE} (${MODE})`);
const port = await freePort();
const child: ChildProcess = spawn(process.execPath, ["--max-semi-space-size=64", ...(process.env["SVC_FLAGS"] ?? "").split(" ").filter(Boolean), "--import", "tsx", join(ROOT, "src/main.ts")], {
  cwd: ROOT,
  env: {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    ...(cluster ? { REDIS_URL: "", REDIS_CLUSTER_NODES: cluster.seeds, REDIS_PARTITIONS: "16" } : { REDIS_URL: single!.url }),
    ALLOW_PLAINTEXT: "true",
    LOG_LEVEL: "warn",
    MAX_SESSIONS_PER_USER: "0",
    SESSION_TTL_MIN: "1s",
    WATCH_HEARTBEAT: "1h",
  },
  stdio: ["ignore", "ignore", "inherit"],
});
const url = `http://127.0.0.1:${port}`;
await waitForServiceReady(child, url);
const client = createSessionClient(url, { timeoutMs: 30_000 });
const lags: number[] = [];
const sched: number[] = [];
const deliv: number[] = [];
const watcher = await watchExpired(client, (now, exp, logAt) => {
  lags.push(now - exp);
  sched.push(logAt - exp);
  deliv.push(now - logAt);
});
await sleep(3000);
const before = await cmdstats(raw);
const t0 = Date.now();
let created = 0;
if (PROBE === "grpc") {
  const total = RATE * SECONDS;
  let sent = 0;
  const inflight = new Set<Promise<void>>();
  while (sent < total) {
    const due = Math.floor(((Date.now() - t0) / 1000) * RATE);
    while (sent < Math.min(due, total) && inflight.size < 256) {
      sent += 1;
      const p = client.createSession({ userId: "probe", dataSource: "probe", ttl: durationFromMs(2000) }).then(() => void (created += 1)).catch(() => undefined).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await sleep(2);
  }
  await Promise.all(inflight);
} else {
  const r = await scheduleExpiries({ store, rate: RATE, seconds: SECONDS, leadMs: 2000, session: (i) => ({ tenant: "default", userId: "probe", dataSource: `source-${i % 10}`, accessLevel: "read", metadata: "{}", requestId: "" }) });
  created = r.created;
}
const deadline = Date.now() + 17_000;
while (lags.length < created && Date.now() < deadline) await sleep(50);
const elapsed = (Date.now() - t0) / 1000;
const after = await cmdstats(raw);
console.log(`lag  ${st(lags)}  (${lags.length}/${created})`);
console.log(`sched ${st(sched)}`);
console.log(`deliv ${st(deliv)}`);
const tot = (m: Map<string, number>): number => [...m].filter(([k]) => k.endsWith(".calls")).reduce((a, [, v]) => a + v, 0);
const scripts = (m: Map<string, number>): number => (m.get("fcall.calls") ?? 0) + (m.get("evalsha.calls") ?? 0) + (m.get("eval.calls") ?? 0);
console.log(`per probe: service CPU ${((after.get("svc")! - before.get("svc")!) / created).toFixed(3)} ms, redis CPU ${((after.get("cpu")! - before.get("cpu")!) / created).toFixed(3)} ms, scripts ${((scripts(after) - scripts(before)) / created).toFixed(2)}, commands ${((tot(after) - tot(before)) / created).toFixed(1)}`);
const rows = [...after].filter(([k]) => k.endsWith(".calls")).map(([k, v]) => [k.slice(0, -6), v - (before.get(k) ?? 0), (after.get(k.replace(".calls", ".usec")) ?? 0) - (before.get(k.replace(".calls", ".usec")) ?? 0)] as const).filter(([, c]) => c > 0).sort((a, b) => b[2] - a[2]);
for (const [k, c, us] of rows.slice(0, 12)) console.log(`  ${k}: ${(c / elapsed).toFixed(0)}/s, ${(us / elapsed / 1000).toFixed(1)} ms CPU/s, ${(us / c).toFixed(0)} us/call`);
await watcher.stop();
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
for (const c of raw) c.disconnect();
await store.dispose();
await single?.stop();
await cluster?.stop();
process.exit(0);
