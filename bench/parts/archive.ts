/** The archive sink to PostgreSQL at 1k expirations/s (bench/archive-bench.ts, in its own process). */
import type { ArchiveBenchReport } from "../archive-bench.js";
import { fmtInt } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { ARCHIVE_TIMEOUT_MS } from "../settings.js";

export type ArchiveResult = { readonly report: ArchiveBenchReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

export const archivePart: BenchPart<ArchiveResult> = {
  name: "archive",
  async run() {
    console.log("archive sink via bench/archive-bench.ts");
    const { last, error } = await runScript("archive-bench.ts", [], {}, ARCHIVE_TIMEOUT_MS);
    const result: ArchiveResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as ArchiveBenchReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (a) => {
    const rows: TargetRow[] = [];
    const r = a?.report;
    if (r === undefined) {
      rows.push({ measure: "Archive sink at 1k expirations/s", value: a === undefined ? "not run (BENCH_PARTS)" : `not measured: ${a.error}`, target: "", ok: a === undefined ? undefined : false });
      return rows;
    }
    rows.push({
      measure: `Archive sink: rows/s into PostgreSQL with ${fmtInt(r.ratePerSecond)} expirations/s for ${r.seconds} s (${fmtInt(r.archived)} of ${fmtInt(r.sessions)} archived); sink lag p99`,
      value: `${fmtInt(r.rowsPerSecond)} rows/s; p99 ${fmtInt(r.sinkLagMs.p99)} ms`,
      target: `keeps pace (≥ 95 % of ${fmtInt(r.ratePerSecond)}/s), every session archived`,
      ok: r.archived === r.sessions && r.rowsPerSecond >= 0.95 * r.ratePerSecond,
    });
    return rows;
  },
  render: (lines, a) => lines.push(...renderArchive(a)),
  failed: (a) => a.error !== undefined,
};

/** The RESULTS.md section: the measured figures, or why there are none. */
function renderArchive(result: { readonly report?: ArchiveBenchReport; readonly error?: string }): string[] {
  const lines = ["## Archive sink (PostgreSQL)", ""];
  const r = result.report;
  if (r === undefined) return [...lines, `Not measured: ${result.error ?? "no result"}`, ""];
  const ms = (p: { p50: number; p99: number; max: number }): string => `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms`;
  lines.push(
    `bench/archive-bench.ts: ${r.sessions.toLocaleString("en-US")} sessions expiring at ${r.ratePerSecond}/s for ${r.seconds} s (steady state: ` +
      "each created 0.5-5 s before its slot, straight into Redis with the store's scripts), the service in its own process with " +
      `ARCHIVE_DATABASE_URL on the machine's PostgreSQL, ARCHIVE_BATCH_SIZE ${r.batchSize}. Lags are per row, from the database: ` +
      "archived_at (the INSERT's transaction time) minus the event's log time (sink) or the session's expire_time (end to end).",
    "",
    "| Measure | Value |",
    "|---|---:|",
    `| Archived | ${r.archived.toLocaleString("en-US")} of ${r.sessions.toLocaleString("en-US")} |`,
    `| Archive rows/s over the expiry window | ${r.rowsPerSecond.toFixed(0)} |`,
    `| Last row after the last expiry | ${r.drainMs} ms |`,
    `| Sink lag (event → row) | ${ms(r.sinkLagMs)} |`,
    `| End to end (expire_time → row) | ${ms(r.endToEndMs)} |`,
    `| Anchor: the sink's INSERT run directly, one connection | ${r.directInsertRowsPerSecond.toFixed(0)} rows/s (the sink used ${((100 * r.rowsPerSecond) / r.directInsertRowsPerSecond).toFixed(0)} % of it) |`,
    "",
  );
  return lines;
}
