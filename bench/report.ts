/**
 * RESULTS.md: the run's set-up, the Targets table (every part's rows), each
 * part's sections, and what limits the numbers on this machine.
 */
import { flagsLabel, fmtInt, fmtUs, passMiss } from "./format.js";
import type { BenchPart, PartContext, PartResults } from "./part.js";
import { failedPhases, throughputPart, type Throughput, type VariantResult } from "./parts/throughput.js";
import { watchPart } from "./parts/watch.js";
import type { MachineInfo } from "./processes.js";
import { CONCURRENCY, ROUND_MS, ROUND_SETTLE_MS, ROUNDS, WARMUP_MS } from "./settings.js";
import { cpuCeiling } from "./statistics.js";
import type { WatchBenchReport } from "./watch-bench.js";

export interface Results {
  readonly date: string;
  readonly machine: MachineInfo;
  readonly logLevel: string;
  readonly productionFlags: readonly string[];
  readonly context: PartContext;
  /** Every registered part, in order: its Targets rows show even when it did not run. */
  readonly registered: readonly BenchPart<unknown>[];
  readonly parts: PartResults;
  readonly totalSeconds: number;
  /** Wall time of each part that ran, with the 1-minute load average at its end. */
  readonly partTimes: readonly PartTime[];
  readonly loadAvgAtEnd: string;
}

export interface PartTime {
  readonly name: string;
  readonly seconds: number;
  readonly loadAvg: number;
}

export function render(r: Results): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push("# Benchmark results", "");
  lines.push("Written by `npm run bench` (bench/run.ts); overwritten on every run.", "");
  lines.push(`- Date: ${r.date}`);
  lines.push(`- CPU: ${m.cpuModel}, ${m.cores} cores; memory ${m.memoryGiB} GiB; ${m.os}; load average at start ${m.loadAvg}`);
  lines.push(`- Node ${m.node}; redis-server ${m.redis} (private instances, persistence off)`);
  lines.push(
    `- Service: \`src/main.ts\` (through tsx) in a process of its own on RedisStore with metadata encryption on; log level ${r.logLevel}, logs and audit records on stdout, which goes to /dev/null. Production Node flags (package.json \`start:prod\`): ${flagsLabel(r.productionFlags)}`,
  );
  lines.push(
    `- Throughput: ${CONCURRENCY} concurrent callers in a separate load-generator process, the generated client (createSessionClient) speaking gRPC over h2c, which the service answers on its own gRPC unary path (src/server/grpc-unary), one HTTP/2 connection for SessionService and one for Health; per operation ${WARMUP_MS} ms warm-up, then ${ROUNDS} interleaved rounds of ${ROUND_MS} ms measured (after ${ROUND_SETTLE_MS} ms settling each), the operations in reverse order every other round`,
  );
  lines.push(`- Whole run: ${r.totalSeconds.toFixed(0)} s; load average at the end ${r.loadAvgAtEnd} (other work on the machine shows here)`);
  lines.push(`- Parts (BENCH_PARTS), wall time and 1-minute load average at their end: ${r.partTimes.map((p) => `${p.name} ${p.seconds.toFixed(0)} s (${p.loadAvg.toFixed(1)})`).join(", ")}`, "");
  const throughput = r.parts.get(throughputPart);
  const watch = r.parts.get(watchPart);
  const failed = throughput === undefined ? [] : failedPhases(throughput);
  if (failed.length > 0) lines.push(`**Warning: calls failed in ${failed.join(", ")}; those numbers do not measure the service.**`, "");

  lines.push("## Targets", "");
  lines.push("| Measure | Value | Target | |");
  lines.push("|---|---:|---:|---|");
  for (const row of r.registered.flatMap((part) => part.targetRows(r.parts.get(part)))) {
    lines.push(`| ${row.measure} | ${row.value} | ${row.target} | ${row.ok === undefined ? "" : passMiss(row.ok)} |`);
  }
  lines.push("");

  for (const part of r.registered) {
    const result = r.parts.get(part);
    if (result !== undefined) part.render(lines, result, r.context);
  }
  if (throughput !== undefined) renderLimits(lines, throughput, m, watch?.report);
  return lines.join("\n") + "\n";
}

function renderLimits(lines: string[], t: Throughput, m: MachineInfo, watch: WatchBenchReport | undefined): void {
  const v = t.variants[t.production] as VariantResult;
  const c = v.check;
  const get = v.service.get;
  lines.push("## What limits these numbers on this machine", "");
  lines.push(
    `CPU. A Health/Check, which does no work of its own, costs the service ${fmtUs(c.serverCpuUsPerOp)} µs and the load generator ${fmtUs(c.clientCpuUsPerOp)} µs of CPU: that is the cost of the HTTP/2 and gRPC framing and the Connect and protobuf-es layers on both ends, and it is most of every call's cost (GetSession: ${fmtUs(get.serverCpuUsPerOp)} µs in the service, ${fmtUs(get.redisCpuUsPerOp)} µs in Redis). The load generator, the service and redis-server share ${m.cores} cores, so each call's total CPU (about ${fmtUs(get.serverCpuUsPerOp + get.clientCpuUsPerOp + get.redisCpuUsPerOp)} µs for GetSession) caps throughput near ${fmtInt(cpuCeiling(get, m.cores))} calls/s, and the service gets only part of the machine; measured: ${fmtInt(get.opsPerSec)}/s. The direct-ioredis floor skips the framework entirely, which is why it runs an order of magnitude faster. On a service with cores of its own, its CPU per call sets the ratios (see "CPU time per call").`,
    "",
  );
  const largest = Math.max(...(watch?.fanouts.map((f) => f.watchers) ?? [0]));
  const fan = watch?.fanouts.find((f) => f.watchers === largest && f.reader === "lean");
  const viaConnect = watch?.fanouts.find((f) => f.watchers === largest && f.reader === "connect");
  if (fan?.serviceCpuUsPerDelivery !== undefined && fan.clientCpuUsPerDelivery !== undefined) {
    lines.push(
      `Fan-out is bound the same way: each delivery of an event to one watch stream costs the service ${fmtUs(fan.serviceCpuUsPerDelivery)} µs and the watchers' process ${fmtUs(fan.clientCpuUsPerDelivery)} µs of CPU with WatchReader${viaConnect?.clientCpuUsPerDelivery === undefined ? "" : ` (${fmtUs(viaConnect.clientCpuUsPerDelivery)} µs with connect-es's client, whose per-message async pipeline is why WatchReader exists)`}, so one event to ${fmtInt(fan.watchers)} watchers is about ${fmtInt((fan.serviceCpuUsPerDelivery * fan.watchers) / 1000)} ms of the service's CPU and ${fmtInt((fan.clientCpuUsPerDelivery * fan.watchers) / 1000)} ms of the watchers' process's, on the same ${m.cores} cores. The service hands the first slices of watchers their bytes while it prepares the next ones, so the two overlap.`,
      "",
    );
  }
}
