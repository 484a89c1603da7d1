/**
 * Watch delivery latency on a 3-primary loopback cluster (REDIS_PARTITIONS=16),
 * A/B between service checkouts in the same run:
 *
 *   node --import tsx bench/cluster-watch-latency.ts [label=root ...]   # default: this checkout, "current"
 *
 * Each round runs every variant in turn (interleaved, so the machine's load
 * hits them alike): the service in its own process (src/main.ts of that
 * root) on the same cluster, a remote watcher of CREATED events over h2c;
 * then IDLE_MS with the watcher open and nothing happening (CPU seconds of the
 * cluster's primaries and of the service per second: the cost of waiting for
 * events), then PROBES creates, one every GAP_MS, each latency = arrival at
 * the watcher − the event's log time (its cursor's ms: Redis's clock on the
 * same machine). Prints one line per variant and round, then a JSON summary.
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { createSessionClient, EventType } from "@sessiond/client";
import { startServiceProcess } from "./service-ready.js";
import { stopProcess } from "./service-process.js";
import { startRedisCluster } from "../test/support/redis-cluster.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const num = (name: string, fallback: number): number => Number(process.env[name] || String(fallback));
const ROUNDS = num("LATENCY_ROUNDS", 3);
const PROBES = num("LATENCY_PROBES", 200);
const GAP_MS = num("LATENCY_GAP_MS", 20);
const IDLE_MS = num("LATENCY_IDLE_MS", 5000);

const variants = process.argv.slice(2).map((arg) => {
  const [label, root] = arg.split("=") as [string, string];
  return { label, root: resolve(root) };
});
if (variants.length === 0) variants.push({ label: "current", root: ROOT });

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** User + system CPU seconds of a process (Linux /proc). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface RoundResult {
  readonly latencies: number[];
  readonly lost: number;
  readonly redisCpuPerS: number;
  readonly serviceCpuPerS: number;
  readonly load: number;
}

/** A key prefix per service run: each run starts on empty keys. */
let runs = 0;

async function round(root: string, cluster: Awaited<ReturnType<typeof startRedisCluster>>, pids: readonly number[]): Promise<RoundResult> {
  const { child, url } = await startServiceProcess(root, {
    REDIS_URL: "",
    REDIS_CLUSTER_NODES: cluster.seeds,
    REDIS_PARTITIONS: "16",
    ALLOW_PLAINTEXT: "true",
    KEY_PREFIX: `lat${runs++}:`,
    LOG_LEVEL: "warn",
    MAX_SESSIONS_PER_USER: "0",
    WATCH_HEARTBEAT: "1h",
  });
  const client = createSessionClient(url, { timeoutMs: 30_000 });
  const abort = new AbortController();
  const arrivals = new Map<string, number>();
  let ready = (): void => {};
  const watching = new Promise<void>((r) => (ready = r));
  const watch = (async () => {
    for await (const r of client.watchSessions({ userId: "probe", eventTypes: [EventType.CREATED], sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
      const e = r.event;
      if (e === undefined) continue;
      if (e.type === EventType.HEARTBEAT || e.type === EventType.SNAPSHOT) ready();
      if (e.type === EventType.CREATED && e.session !== undefined) arrivals.set(e.session.sessionId, Date.now() - Number(e.cursor.split("-")[0]));
    }
  })().catch(() => undefined);
  await Promise.race([watching, sleep(10_000)]);
  await sleep(500);
  const pid = child.pid as number;
  const redisBefore = pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const serviceBefore = cpuSeconds(pid);
  const idleStart = performance.now();
  await sleep(IDLE_MS);
  const idleS = (performance.now() - idleStart) / 1000;
  const redisCpuPerS = (pids.reduce((s, p) => s + cpuSeconds(p), 0) - redisBefore) / idleS;
  const serviceCpuPerS = (cpuSeconds(pid) - serviceBefore) / idleS;
  const ids: string[] = [];
  for (let i = 0; i < PROBES; i++) {
    const reply = await client.createSession({ userId: "probe", dataSource: "probe" });
    if (reply.session !== undefined) ids.push(reply.session.sessionId);
    await sleep(GAP_MS);
  }
  const deadline = Date.now() + 10_000;
  while (ids.some((id) => !arrivals.has(id)) && Date.now() < deadline) await sleep(20);
  abort.abort();
  await watch;
  await stopProcess(child);
  const latencies = ids.flatMap((id) => (arrivals.has(id) ? [arrivals.get(id) as number] : []));
  return { latencies, lost: ids.length - latencies.length, redisCpuPerS, serviceCpuPerS, load: loadavg()[0] ?? Number.NaN };
}

const cluster = await startRedisCluster({ primaries: 3, replicas: 0 });
try {
  const pids = await Promise.all(
    cluster.nodes.map(async (n) => {
      const c = cluster.client(n);
      const info = await c.info("server");
      c.disconnect();
      return Number(/process_id:(\d+)/.exec(info)?.[1]);
    }),
  );
  const all = new Map<string, RoundResult[]>(variants.map((v) => [v.label, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
      const result = await round(v.root, cluster, pids);
      all.get(v.label)?.push(result);
      const s = [...result.latencies].sort((a, b) => a - b);
      console.error(
        `round ${r + 1} ${v.label}: p50 ${percentile(s, 0.5)} ms p99 ${percentile(s, 0.99)} ms max ${s.at(-1)} ms lost ${result.lost}; ` +
          `idle CPU: redis ${(result.redisCpuPerS * 100).toFixed(1)}% service ${(result.serviceCpuPerS * 100).toFixed(1)}%; load ${result.load.toFixed(2)}`,
      );
    }
  }
  const summary = Object.fromEntries(
    [...all].map(([label, results]) => {
      const s = results.flatMap((x) => x.latencies).sort((a, b) => a - b);
      const mean = (f: (x: RoundResult) => number): number => results.reduce((t, x) => t + f(x), 0) / results.length;
      return [
        label,
        {
          n: s.length,
          lost: results.reduce((t, x) => t + x.lost, 0),
          p50: percentile(s, 0.5),
          p99: percentile(s, 0.99),
          max: s.at(-1),
          idleRedisCpuPct: +(mean((x) => x.redisCpuPerS) * 100).toFixed(2),
          idleServiceCpuPct: +(mean((x) => x.serviceCpuPerS) * 100).toFixed(2),
          load: +mean((x) => x.load).toFixed(2),
        },
      ];
    }),
  );
  console.log(JSON.stringify(summary));
} finally {
  await cluster.stop();
}
