/**
 * The archive benchmark's report (bench/archive-bench.ts prints it as its last
 * line) and its section of bench/RESULTS.md.
 */
export interface ArchiveBenchReport {
  readonly ratePerSecond: number;
  readonly seconds: number;
  readonly sessions: number;
  readonly archived: number;
  /** Rows landed per second over the expiry window. */
  readonly rowsPerSecond: number;
  /** From the last session's expire_time to its row in PostgreSQL. */
  readonly drainMs: number;
  readonly sinkLagMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly endToEndMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** Direct PgArchive.insert of the same number of rows, rows/s (anchor). */
  readonly directInsertRowsPerSecond: number;
  readonly batchSize: number;
  /** From the first create to the last. */
  readonly createSeconds: number;
}

/** The RESULTS.md section: the measured figures, or why there are none. */
export function renderArchive(result: { readonly report?: ArchiveBenchReport; readonly error?: string }): string[] {
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
