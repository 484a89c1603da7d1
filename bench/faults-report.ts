/**
 * The result of bench/faults-bench.ts (issue 12) and its section of
 * bench/RESULTS.md. Kept apart from the script, which runs when imported.
 */

/** Issue 12's targets. */
export const FAULTS_TARGETS = {
  /** Redis memory per ended session (its archive), with ~40 B of metadata. */
  archiveBytes: 400,
  /** Redis answering again → the next event at a watcher. */
  deliveryMs: 1000,
};

export interface FaultsReport {
  readonly sessions: number;
  /** Plaintext and sealed metadata length, bytes. */
  readonly metadataBytes: number;
  readonly sealedMetadataBytes: number;
  /** used_memory per ended session (its archive), event log excluded. */
  readonly archiveBytesPerSession: number;
  /** The same archives as the hashes of earlier versions (same-run anchor). */
  readonly hashArchiveBytesPerSession: number;
  /** Redis memory per live session with this sealed metadata (event log excluded). */
  readonly liveBytesPerSession: number;
  /** Bytes per event-log entry with this metadata. */
  readonly eventLogBytesPerEvent: number;
  /** Redis answering again → CREATED at the watcher, ms, per blip (CLIENT KILL). */
  readonly killDeliveryMs: readonly number[];
  /** The same after CLIENT KILL + CLIENT PAUSE 300 ms. */
  readonly pauseKillDeliveryMs: readonly number[];
}

export type FaultsResult = { readonly report: FaultsReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const verdict = (ok: boolean): string => (ok ? "met" : "**missed**");

/** The markdown section for RESULTS.md. */
export function renderFaults(result: FaultsResult): string {
  if (result.error !== undefined) return `\n## Faults (issue 12)\n\nfailed: ${result.error}\n`;
  const r = result.report;
  const max = (xs: readonly number[]): number => Math.max(...xs);
  const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
  const ms = (xs: readonly number[]): string => `median ${median(xs).toFixed(0)} ms, max ${max(xs).toFixed(0)} ms (${xs.length} blips)`;
  return [
    "",
    "## Faults (issue 12, bench/faults-bench.ts)",
    "",
    `Archives: ${r.sessions.toLocaleString("en-US")} sessions created and closed through RedisStore, metadata ${r.metadataBytes} B of JSON sealed to ${r.sealedMetadataBytes} B (AES-256-GCM); used_memory delta per ended session, event log excluded. Anchor: the same archives as hashes (the earlier layout), same run.`,
    "",
    "| measure | value | target | |",
    "|---|---|---|---|",
    `| Redis memory per ended session (archive) | ${r.archiveBytesPerSession.toFixed(0)} B | ≤ ${FAULTS_TARGETS.archiveBytes} B | ${verdict(r.archiveBytesPerSession <= FAULTS_TARGETS.archiveBytes)} |`,
    `| the same as hashes (earlier layout) | ${r.hashArchiveBytesPerSession.toFixed(0)} B | ratio ${(r.archiveBytesPerSession / r.hashArchiveBytesPerSession).toFixed(2)} | |`,
    `| event log per event (this metadata) | ${r.eventLogBytesPerEvent.toFixed(0)} B | | |`,
    `| live session with this metadata (record, indexes, shadow key) | ${r.liveBytesPerSession.toFixed(0)} B | | |`,
    `| Redis answering again → next event at a watcher, after CLIENT KILL | ${ms(r.killDeliveryMs)} | < ${FAULTS_TARGETS.deliveryMs} ms | ${verdict(max(r.killDeliveryMs) < FAULTS_TARGETS.deliveryMs)} |`,
    `| the same after CLIENT KILL + 300 ms CLIENT PAUSE | ${ms(r.pauseKillDeliveryMs)} | < ${FAULTS_TARGETS.deliveryMs} ms | ${verdict(max(r.pauseKillDeliveryMs) < FAULTS_TARGETS.deliveryMs)} |`,
    "",
  ].join("\n");
}
