/** Expiry lag and fan-out to many watchers (bench/watch-bench.ts, in its own process). */
import { flagsLabel, fmtB, fmtInt, fmtStats, fmtUs, oneLine } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { TARGETS, WATCH_TIMEOUT_MS } from "../settings.js";
import type { WatchBenchReport } from "../watch-bench.js";

export type WatchResult = { readonly report: WatchBenchReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

export const watchPart: BenchPart<WatchResult> = {
  name: "watch",
  async run({ productionFlags }) {
    console.log(`expiry lag and fan-out via bench/watch-bench.ts (service flags: ${flagsLabel(productionFlags)})`);
    const watch = await measureWatch(productionFlags);
    if (watch.error !== undefined) console.log(`  failed: ${watch.error}`);
    return watch;
  },
  targetRows: (w) => {
    const rows: TargetRow[] = [];
    if (w?.report !== undefined) {
      const expiry = w.report.expiry.find((e) => e.live === TARGETS.expiryLiveSessions);
      const failure = (step: string): string => w.report.errors.find((e) => e.startsWith(step)) ?? "quick run";
      rows.push(
        expiry === undefined
          ? { measure: `Expiry lag p99 at ${fmtInt(TARGETS.expiryLiveSessions)} live sessions`, value: `not measured (${oneLine(failure("expiry"))})`, target: `< ${TARGETS.expiryP99Ms} ms`, ok: false }
          : {
              measure: `Expiry lag p99, expire_time → EXPIRED at a remote watcher, ${fmtInt(expiry.live)} live sessions, ${fmtInt(w.report.rate)} expirations/s (${fmtInt(expiry.service.n)} of ${fmtInt(expiry.probes)} events arrived)`,
              value: `${fmtInt(expiry.service.p99)} ms`,
              target: `< ${TARGETS.expiryP99Ms} ms, every event`,
              ok: expiry.service.p99 < TARGETS.expiryP99Ms && expiry.service.n === expiry.probes && expiry.failed === 0 && (expiry.late ?? 0) === 0,
            },
      );
      // The target is judged with sessiond's own WatchReader; connect-es's client is reported next to it.
      const fan = w.report.fanouts.find((f) => f.watchers === TARGETS.fanoutWatchers && f.reader === "lean");
      rows.push(
        fan === undefined
          ? { measure: `Fan-out to ${fmtInt(TARGETS.fanoutWatchers)} watchers`, value: `not measured (${oneLine(failure(`fan-out ${TARGETS.fanoutWatchers} lean`))})`, target: `held, p99 < ${TARGETS.fanoutP99Ms} ms`, ok: false }
          : {
              measure: `Fan-out: ${fmtInt(fan.watchers)} watchers held on one process, read with WatchReader, p99 delivery latency (${fmtInt(fan.deliveries.n)} of ${fmtInt(fan.watchers * w.report.events)} deliveries)`,
              value: `${fmtInt(fan.deliveries.p99)} ms`,
              target: `every watcher held, p99 < ${TARGETS.fanoutP99Ms} ms`,
              ok: fan.deliveries.p99 < TARGETS.fanoutP99Ms && fan.deliveries.n === fan.watchers * w.report.events,
            },
      );
    } else {
      rows.push({ measure: "Expiry lag and fan-out", value: w === undefined ? "not run (BENCH_PARTS)" : `not measured: ${w.error}`, target: "", ok: w === undefined ? undefined : false });
    }
    return rows;
  },
  render: (lines, w, { productionFlags }) => renderWatch(lines, w, productionFlags),
  failed: (w) => w.error !== undefined || (w.report?.errors.length ?? 0) > 0,
};

async function measureWatch(flags: readonly string[]): Promise<WatchResult> {
  const { last, error, partial } = await runScript("watch-bench.ts", [], { WATCH_BENCH_NODE_FLAGS: flags.join(" ") }, WATCH_TIMEOUT_MS);
  if (last !== undefined) return { report: JSON.parse(last) as WatchBenchReport };
  if (partial === undefined) return { error: error ?? "no result" };
  // Killed or failed after some steps: what they measured, and why the rest is missing.
  const report = JSON.parse(partial) as WatchBenchReport;
  return { report: { ...report, errors: [...report.errors, error ?? "ended early"] } };
}

function renderWatch(lines: string[], w: WatchResult, flags: readonly string[]): void {
  lines.push("## Expiry lag and fan-out (bench/watch-bench.ts)", "");
  if (w.report === undefined) {
    lines.push(`Not measured: ${w.error}`, "");
    return;
  }
  const r = w.report;
  if (r.errors.length > 0) lines.push(`**Steps that failed** (the rest measured): ${r.errors.map(oneLine).join("; ")}`, "");
  lines.push(
    `The service (src/main.ts, ${flagsLabel(flags)}) in its own process on a private redis-server; the watchers in other processes over h2c.${r.quick ? " **Quick run (WATCH_BENCH_QUICK=1): smaller sizes than the targets.**" : ""}`,
    "",
  );
  lines.push(
    `Expiry: the live sessions are loaded, then probe sessions come due at ${fmtInt(r.rate)}/s for ${r.seconds} s: the bench writes each into Redis with the store's create script (sealed as the service seals) 0.5–5 s before its slot (bench/expiry-schedule.ts), so the rate is the schedule's, not what an RPC client keeps up with on a loaded machine, and the service's work is expiring and delivering. Lag = arrival of the EXPIRED event at a remote watcher − expire_time. Redis's own lag: for the same expire times, plain keys set with PXAT among the same population, timed from expire_time to their \`expired\` keyspace notification.`,
    "",
  );
  lines.push("| Live sessions | service lag p50 / p99 / max, ms | events | Redis `expired` notification p50 / p99 / max, ms | notifications | probes created in |");
  lines.push("|---:|---:|---:|---:|---:|---:|");
  for (const e of r.expiry) {
    lines.push(
      `| ${fmtInt(e.live)} | ${fmtStats(e.service)} | ${fmtInt(e.service.n)} / ${fmtInt(e.probes)}${e.failed > 0 ? ` (${e.failed} creates failed)` : ""}${(e.late ?? 0) > 0 ? ` (${e.late} written late)` : ""} | ${fmtStats(e.redisNotification)} | ${fmtInt(e.redisDelivered)} / ${fmtInt(e.probes)} | ${e.seconds.toFixed(1)} s |`,
    );
  }
  lines.push(
    "",
    "Redis's figures cover only the notifications that arrived before the run moved on (about a second after the service had announced the last probe): Redis finds expired keys by sampling, so among this many keys with a TTL most probes are not noticed, and announced, until much later.",
    "",
  );
  lines.push(
    `Fan-out: the watch streams are held by one separate client process (one HTTP/2 connection per 1000 streams); ${r.events} updates, one at a time, each delivered to every watcher. Latency = arrival at a watcher − the event's log time (its cursor, Redis's clock on the same machine); "last watcher" = per event, the time until the last watcher had it. One warm-up update goes first, as the throughput part warms up: its time until the last watcher had it is shown ("warm-up event"), not counted. Reader: "WatchReader" is sessiond's lean reader (packages/client/src/watch-reader.ts), "connect-es" the generated client; the service is the same. CPU: of each whole process (all threads), from the first update until every watcher had every event, per delivery.`,
    "",
  );
  lines.push("| Watchers | reader | deliveries | delivery p50 / p99 / max, ms | last watcher p50 / p99 / max, ms | warm-up event, last watcher, ms | service CPU µs/delivery | watchers' process CPU µs/delivery |");
  lines.push("|---:|---|---:|---:|---:|---:|---:|---:|");
  for (const f of r.fanouts) {
    lines.push(
      `| ${fmtInt(f.watchers)} | ${f.reader === "lean" ? "WatchReader" : "connect-es"} | ${fmtInt(f.deliveries.n)} / ${fmtInt(f.watchers * r.events)} | ${fmtStats(f.deliveries)} | ${fmtStats(f.lastWatcher)} | ${fmtInt(f.coldLastWatcherMs)} | ${fmtUs(f.serviceCpuUsPerDelivery ?? Number.NaN)} | ${fmtUs(f.clientCpuUsPerDelivery ?? Number.NaN)} |`,
    );
  }
  lines.push("");
  lines.push(`Steps (wall time, s): ${Object.entries(r.durations).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")}.`, "");
  if (r.memory !== undefined) {
    lines.push(
      `Cross-check of memory from this run's preload: ${fmtB(r.memory.perSession)} B per live session without the event log, ${fmtB(r.memory.perSessionWithLog)} B with the CREATED events in it.`,
      "",
    );
  }
}
