/**
 * How long another process's write takes to reach a READ_CACHE_MAX_AGE copy
 * (README, "Reading from a copy"): the window in which a get may show a
 * session as it was before a write acknowledged elsewhere.
 *
 *   node --import tsx bench/copy-window-bench.ts     # progress, then one JSON line (CopyWindowReport)
 *
 * Two service processes (src/main.ts) on one private redis-server: A with
 * READ_CACHE_MAX_AGE=60s (so only the event log can refresh its copy), B
 * without copies. Each sample: a get through A (its copy is warm), an update
 * of the session's metadata through B; from the moment B's answer arrives,
 * gets through A back to back until one shows the update. The window is at
 * most the time to that first fresh answer; how many stale answers came
 * before it says how often the copy was still old when asked. Every get has
 * its own round trip in the figure, so the unchanged get's own latency
 * through A is reported beside it.
 *
 * Environment: COPY_WINDOW_SAMPLES (default 300).
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionClient, type SessionClient } from "@sessiond/client";
import { runAsBenchMain } from "./child-main.js";
import { startServiceProcess } from "./service-ready.js";
import { stopProcess } from "./service-process.js";
import { ROOT } from "./settings.js";
import { startRedisServer } from "../test/support/redis-server.js";

const SAMPLES = Number(process.env["COPY_WINDOW_SAMPLES"] ?? 300);
/** A fresh answer not seen by then means the write never reached the copy (its max age is 60 s). */
const GIVE_UP_MS = 10_000;

export interface CopyWindowReport {
  readonly samples: number;
  /** B's answer → first fresh answer through A, ms. */
  readonly windowP50Ms: number;
  readonly windowP99Ms: number;
  readonly windowMaxMs: number;
  /** Samples whose first get after B's answer was still the old copy. */
  readonly staleFirst: number;
  /** Most stale answers before a fresh one in one sample. */
  readonly mostStale: number;
  /** A get through A from its copy, alone, ms. */
  readonly getP50Ms: number;
  readonly getP99Ms: number;
  readonly error?: string;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

async function measure(log: (line: string) => void): Promise<CopyWindowReport> {
  const redis = await startRedisServer();
  const keys = `bench:${randomBytes(32).toString("base64")}`;
  const env = { REDIS_URL: redis.url, ENCRYPTION_KEYS: keys, LOG_LEVEL: "warn", AUDIT_LOG: "off" };
  const a = await startServiceProcess(ROOT, { ...env, READ_CACHE_MAX_AGE: "60s" });
  const b = await startServiceProcess(ROOT, env);
  try {
    const viaA: SessionClient = createSessionClient(a.url, { timeoutMs: 10_000 });
    const viaB: SessionClient = createSessionClient(b.url, { timeoutMs: 10_000 });
    const { session } = await viaB.createSession({ userId: "window", dataSource: "ds", ttl: durationFromMs(3_600_000), metadata: { n: 0 } });
    const sessionId = session?.sessionId ?? "";
    const windows: number[] = [];
    const gets: number[] = [];
    let staleFirst = 0;
    let mostStale = 0;
    log(`copy window: ${SAMPLES} writes through one process, read through another's copy`);
    for (let n = 1; n <= SAMPLES; n++) {
      const started = performance.now();
      await viaA.getSession({ sessionId });
      gets.push(performance.now() - started);
      await viaB.updateSession({ sessionId, metadata: { n } });
      const acknowledged = performance.now();
      let stale = 0;
      for (;;) {
        const seen = (await viaA.getSession({ sessionId })).session?.metadata?.["n"];
        if (seen === n) break;
        stale += 1;
        if (performance.now() - acknowledged > GIVE_UP_MS) throw new Error(`write ${n} did not reach the copy within ${GIVE_UP_MS} ms`);
      }
      windows.push(performance.now() - acknowledged);
      if (stale > 0) staleFirst += 1;
      mostStale = Math.max(mostStale, stale);
      // Spread the samples over the reader's wake-ups rather than right behind each other.
      await sleep(Math.random() * 5);
    }
    windows.sort((x, y) => x - y);
    gets.sort((x, y) => x - y);
    return {
      samples: windows.length,
      windowP50Ms: quantile(windows, 0.5),
      windowP99Ms: quantile(windows, 0.99),
      windowMaxMs: windows.at(-1) ?? Number.NaN,
      staleFirst,
      mostStale,
      getP50Ms: quantile(gets, 0.5),
      getP99Ms: quantile(gets, 0.99),
    };
  } finally {
    await stopProcess(a.child);
    await stopProcess(b.child);
    await redis.stop();
  }
}

export function renderCopyWindow(r: CopyWindowReport): string {
  if (r.error !== undefined) return `Not measured: ${r.error}`;
  return [
    "| samples | window p50 / p99 / max, ms | first get after the write still old | most old answers in one sample | a get from the copy alone, p50 / p99, ms |",
    "|---:|---|---:|---:|---|",
    `| ${r.samples} | ${r.windowP50Ms.toFixed(2)} / ${r.windowP99Ms.toFixed(2)} / ${r.windowMaxMs.toFixed(2)} | ${r.staleFirst} | ${r.mostStale} | ${r.getP50Ms.toFixed(2)} / ${r.getP99Ms.toFixed(2)} |`,
  ].join("\n");
}

await runAsBenchMain(
  import.meta.url,
  async (log) => {
    try {
      return await measure(log);
    } catch (error) {
      const nan = Number.NaN;
      return { samples: 0, windowP50Ms: nan, windowP99Ms: nan, windowMaxMs: nan, staleFirst: 0, mostStale: 0, getP50Ms: nan, getP99Ms: nan, error: error instanceof Error ? error.message : String(error) };
    }
  },
  renderCopyWindow,
);
