/**
 * Issue 12's figures (bench/faults-bench.ts, in its own process): Redis memory
 * per ended session (its archive) against the earlier hash layout in the same
 * run, the event log and a live session with encrypted metadata (for the
 * README's sizing table), and event delivery after a dropped Redis connection.
 */
import { fmtB, fmtInt, passMiss } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { FAULTS_TIMEOUT_MS } from "../settings.js";

/** Issue 12's targets. */
const FAULTS_TARGETS = {
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

const max = (xs: readonly number[]): number => Math.max(...xs);
const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const ms = (xs: readonly number[]): string => `median ${median(xs).toFixed(0)} ms, max ${max(xs).toFixed(0)} ms (${xs.length} blips)`;

export const faultsPart: BenchPart<FaultsResult> = {
  name: "faults",
  async run() {
    console.log("archive size and delivery after a dropped connection via bench/faults-bench.ts");
    const { last, error } = await runScript("faults-bench.ts", [], {}, FAULTS_TIMEOUT_MS);
    const result: FaultsResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as FaultsReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (f) => {
    const rows: TargetRow[] = [];
    if (f?.report === undefined) {
      const value = f === undefined ? "not run (BENCH_PARTS)" : `not measured: ${f.error}`;
      rows.push({ measure: "Archive bytes per ended session; delivery after a dropped Redis connection", value, target: `≤ ${FAULTS_TARGETS.archiveBytes} B; < ${FAULTS_TARGETS.deliveryMs} ms`, ok: f === undefined ? undefined : false });
      return rows;
    }
    const r = f.report;
    rows.push({
      measure: `Redis bytes per ended session (archive; ~40 B metadata, encrypted)`,
      value: fmtB(r.archiveBytesPerSession),
      target: `≤ ${FAULTS_TARGETS.archiveBytes}`,
      ok: r.archiveBytesPerSession <= FAULTS_TARGETS.archiveBytes,
    });
    const worst = Math.max(max(r.killDeliveryMs), max(r.pauseKillDeliveryMs));
    rows.push({ measure: "Redis answering again after a dropped connection → next event at a watcher, worst of all blips (ms)", value: fmtInt(worst), target: `< ${FAULTS_TARGETS.deliveryMs}`, ok: worst < FAULTS_TARGETS.deliveryMs });
    return rows;
  },
  render: (lines, f) => {
    lines.push("## Faults (issue 12)", "");
    if (f.report === undefined) {
      lines.push(`Not measured: ${f.error}`, "");
      return;
    }
    const r = f.report;
    lines.push(
      `bench/faults-bench.ts: ${fmtInt(r.sessions)} sessions created and closed through RedisStore, metadata ${r.metadataBytes} B of JSON sealed to ${r.sealedMetadataBytes} B (AES-256-GCM); used_memory delta per ended session, event log excluded. Anchor: the same archives as hashes (the earlier layout), same run. Then as many sessions created and left live, for the sizing table. Delivery: one watcher (client helper) on a service on RedisStore; Redis drops every client connection (CLIENT KILL TYPE normal), in the second row then pauses 300 ms; time from Redis answering a fresh PING to the watcher receiving the CREATED event of the first create the service acknowledges.`,
      "",
      "| Measure | Value | Target | |",
      "|---|---:|---:|---|",
      `| Redis memory per ended session (archive) | ${fmtB(r.archiveBytesPerSession)} B | ≤ ${FAULTS_TARGETS.archiveBytes} B | ${passMiss(r.archiveBytesPerSession <= FAULTS_TARGETS.archiveBytes)} |`,
      `| The same archives as hashes (earlier layout) | ${fmtB(r.hashArchiveBytesPerSession)} B | ratio ${(r.archiveBytesPerSession / r.hashArchiveBytesPerSession).toFixed(2)} | |`,
      `| Live session with this metadata (record, indexes) | ${fmtB(r.liveBytesPerSession)} B | | |`,
      `| Event log per event (this metadata) | ${fmtB(r.eventLogBytesPerEvent)} B | | |`,
      `| Delivery after CLIENT KILL | ${ms(r.killDeliveryMs)} | < ${FAULTS_TARGETS.deliveryMs} ms | ${passMiss(max(r.killDeliveryMs) < FAULTS_TARGETS.deliveryMs)} |`,
      `| Delivery after CLIENT KILL + 300 ms CLIENT PAUSE | ${ms(r.pauseKillDeliveryMs)} | < ${FAULTS_TARGETS.deliveryMs} ms | ${passMiss(max(r.pauseKillDeliveryMs) < FAULTS_TARGETS.deliveryMs)} |`,
      "",
    );
  },
  failed: (f) => f.error !== undefined,
};
