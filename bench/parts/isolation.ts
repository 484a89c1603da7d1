/** Tenant isolation under a large neighbour (bench/tenant-isolation.ts, in its own process). */
import { fmtInt, fmtMs, passMiss } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { ISOLATION_SESSIONS, ISOLATION_SOURCES, ISOLATION_TIMEOUT_MS, TARGETS } from "../settings.js";
import type { IsolationReport } from "../tenant-isolation.js";

export type IsolationResult = { readonly report: IsolationReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

export const isolationPart: BenchPart<IsolationResult> = {
  name: "isolation",
  async run() {
    console.log(`isolation: a neighbour tenant at ${fmtInt(ISOLATION_SESSIONS)} sessions / ${fmtInt(ISOLATION_SOURCES)} data sources via bench/tenant-isolation.ts`);
    const { last, error } = await runScript("tenant-isolation.ts", [String(ISOLATION_SESSIONS), String(ISOLATION_SOURCES)], {}, ISOLATION_TIMEOUT_MS);
    const result: IsolationResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as IsolationReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (r) => {
    const measure = `Another tenant's p99 (GetSession, ListSessions, GetSessionMetrics; its own process) with a neighbour listing at ${fmtInt(ISOLATION_SESSIONS)} sessions / ${fmtInt(ISOLATION_SOURCES)} data sources vs at 1,000 / 100`;
    const row: TargetRow =
      r?.report !== undefined
        ? { measure, value: `${r.report.p99Ratio.toFixed(2)}×`, target: `≤ ${TARGETS.isolationP99Ratio}×`, ok: r.report.p99Ratio <= TARGETS.isolationP99Ratio }
        : { measure, value: r === undefined ? "not run (BENCH_PARTS)" : `not measured: ${r.error}`, target: `≤ ${TARGETS.isolationP99Ratio}×`, ok: r === undefined ? undefined : false };
    return [row];
  },
  render: (lines, r) => {
    lines.push("## Tenant isolation", "");
    if (r.report === undefined) {
      lines.push(`Not measured: ${r.error}`, "");
      return;
    }
    const x = r.report;
    const ops = (p: IsolationReport["small"]): string => Object.entries(p.victimP99ByOp).map(([op, ms]) => `${op} ${fmtMs(ms)}`).join(", ");
    lines.push(
      `bench/tenant-isolation.ts, through RedisStore on a private redis-server: a neighbour tenant runs two loops of unfiltered ListSessions (page 1000) and ListSessions by data source (page 100) while a victim tenant, in a process of its own, runs four loops cycling through GetSession, ListSessions by user (page 100) and GetSessionMetrics' counters read. Two neighbours: one at 1,000 sessions / 100 data sources, one filled to ${fmtInt(x.sessions)} / ${fmtInt(x.sources)} (store calls pipelined on one connection: ${x.fillSeconds.toFixed(0)} s, ${fmtInt(x.fillRate)}/s); ${x.measureSeconds} s of rounds per side alternating between them (A B B A ...); the victim's latencies are pooled per side. What this measures is Redis's share (the shared resource between tenants); the service's event loop is not in it. BENCH_ISOLATION_SESSIONS / BENCH_ISOLATION_SOURCES set the size. Part wall time ${x.seconds.toFixed(0)} s.`,
      "",
      "| Neighbour | Victim ops | Victim p50 ms | Victim p99 ms | p99 by operation, ms | Neighbour unfiltered list p50 ms |",
      "|---|---:|---:|---:|---|---:|",
      `| 1,000 / 100 | ${fmtInt(x.small.victimOps)} | ${fmtMs(x.small.victimP50Ms)} | ${fmtMs(x.small.victimP99Ms)} | ${ops(x.small)} | ${fmtMs(x.small.neighbourListP50Ms)} |`,
      `| ${fmtInt(x.sessions)} / ${fmtInt(x.sources)} | ${fmtInt(x.large.victimOps)} | ${fmtMs(x.large.victimP50Ms)} | ${fmtMs(x.large.victimP99Ms)} | ${ops(x.large)} | ${fmtMs(x.large.neighbourListP50Ms)} |`,
      "",
      `p99 ratio ${x.p99Ratio.toFixed(2)}× (target ≤ ${TARGETS.isolationP99Ratio}×): ${passMiss(x.p99Ratio <= TARGETS.isolationP99Ratio)}.`,
      "",
    );
  },
  failed: (r) => r.error !== undefined,
};
