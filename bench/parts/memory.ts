/** Redis memory per session (bench/redis-memory.ts, in its own process). */
import { fmtB, fmtInt, passMiss } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import type { MemoryReport } from "../redis-memory.js";
import { MEMORY_SESSIONS, MEMORY_TIMEOUT_MS, TARGETS } from "../settings.js";

export type MemoryResult = { readonly report: MemoryReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

export const memoryPart: BenchPart<MemoryResult> = {
  name: "memory",
  async run() {
    console.log(`memory: ${fmtInt(MEMORY_SESSIONS)} sessions via bench/redis-memory.ts`);
    const memory = await measureMemory();
    if (memory.error !== undefined) console.log(`  failed: ${memory.error}`);
    return memory;
  },
  targetRows: (m) => {
    const rows: TargetRow[] = [];
    if (m?.report !== undefined) {
      const rep = m.report;
      rows.push({
        measure: `Redis bytes per session, every index, no expiry machinery (${fmtInt(rep.sessions)} sessions, ~40 B JSON metadata ${rep.sealed ? `sealed to ${rep.metadataBytes} B` : "in plaintext"}; due queue deleted, event log excluded)`,
        value: fmtB(rep.bytesPerSessionWithoutShadow),
        target: `< ${TARGETS.bytesPerSession}`,
        ok: rep.bytesPerSessionWithoutShadow < TARGETS.bytesPerSession,
      });
      rows.push({
        measure: `Redis bytes per session with the expiry machinery and the tenant-wide index (due queue, bucketed P T:ai; no key per session for expiry; event log excluded)`,
        value: fmtB(rep.bytesPerSession),
        target: `< ${TARGETS.bytesPerSessionWithExpiry}`,
        ok: rep.bytesPerSession < TARGETS.bytesPerSessionWithExpiry,
      });
    } else {
      rows.push({ measure: "Redis bytes per session (with and without the expiry machinery)", value: m === undefined ? "not run (BENCH_PARTS)" : `not measured: ${m.error}`, target: `< ${TARGETS.bytesPerSession} / < ${TARGETS.bytesPerSessionWithExpiry}`, ok: m === undefined ? undefined : false });
    }
    return rows;
  },
  render: (lines, m) => renderMemory(lines, m),
  failed: (m) => m.error !== undefined,
};

async function measureMemory(): Promise<MemoryResult> {
  const { last, error } = await runScript("redis-memory.ts", [String(MEMORY_SESSIONS)], {}, MEMORY_TIMEOUT_MS);
  return last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as MemoryReport };
}

function renderMemory(lines: string[], m: MemoryResult): void {
  lines.push("## Redis memory", "");
  if (m.report === undefined) {
    lines.push(`Not measured: ${m.error}`, "");
    return;
  }
  const r = m.report;
  const perEvent = r.eventLogBytes / r.eventLogEntries;
  lines.push(
    `bench/redis-memory.ts: ${fmtInt(r.sessions)} sessions created through RedisStore (${(r.sessions / r.createSeconds).toFixed(0)}/s), 10k users, 10 data sources, ~40 B of JSON metadata ${r.sealed ? `sealed as the service stores it (${r.metadataBytes} B)` : "in plaintext"}, no request ids, with the server settings the service makes at start (hash-max-listpack-value 512, src/store/redis/compact-hashes.ts); used_memory delta per session with the event log subtracted.`,
    "",
  );
  lines.push("| Measure | Bytes | Target | |");
  lines.push("|---|---:|---:|---|");
  lines.push(`| Per session with the expiry machinery (record, indexes, counters, due queue; no key per session for expiry) | ${fmtB(r.bytesPerSession)} | < ${TARGETS.bytesPerSessionWithExpiry} | ${passMiss(r.bytesPerSession < TARGETS.bytesPerSessionWithExpiry)} |`);
  lines.push(`| Per session after deleting the due queue (every index, no expiry machinery) | ${fmtB(r.bytesPerSessionWithoutShadow)} | < ${TARGETS.bytesPerSession} | ${passMiss(r.bytesPerSessionWithoutShadow < TARGETS.bytesPerSession)} |`);
  lines.push(`| The due queue's share (the difference) | ${fmtB(r.bytesPerSession - r.bytesPerSessionWithoutShadow)} | | |`);
  lines.push(
    `| Event log, per event (${fmtInt(r.eventLogEntries)} CREATED entries, ${fmtInt(r.eventLogBytes)} B) | ${fmtB(perEvent)} | bounded: WATCH_RETENTION_EVENTS (default 100,000) events, ≈ ${(perEvent * 100_000 / 1e6).toFixed(0)} MB, and WATCH_RETENTION (default 1 h) | |`,
    "",
  );
  if (r.byKind !== undefined) {
    lines.push("Where the bytes go (MEMORY USAGE of every key of the kind, or of a sample of 2,000 times the count, per session; \"other\" is the rest of the delta):", "");
    lines.push("| Kind of key | Bytes per session |", "|---|---:|");
    for (const [kind, bytes] of Object.entries(r.byKind)) lines.push(`| ${kind} | ${fmtB(bytes)} |`);
    lines.push("");
  }
  lines.push(
    `Keyspace hash-table buckets beyond what the keys need (Redis shrinks its tables only below 10 % fill; from MEMORY STATS): ${r.staleBucketBytesPerSession.toFixed(0)} B per session of the figure without the expiry machinery.`,
    "",
  );
}
