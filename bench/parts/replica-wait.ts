/** The cost of REDIS_WAIT_REPLICAS=1 against no WAIT (bench/replica-wait-bench.ts, in its own process). */
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { renderReplicaWait, type ReplicaWaitReport } from "../replica-wait-bench.js";

export type ReplicaWaitResult = { readonly report: ReplicaWaitReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const TIMEOUT_MS = 10 * 60_000;

export const replicaWaitPart: BenchPart<ReplicaWaitResult> = {
  name: "replica-wait",
  async run() {
    console.log("REDIS_WAIT_REPLICAS=1 against no WAIT, primary + replica, via bench/replica-wait-bench.ts");
    const { last, error } = await runScript("replica-wait-bench.ts", [], { BENCH_CHILD: "1" }, TIMEOUT_MS);
    const report = last === undefined ? undefined : (JSON.parse(last) as ReplicaWaitReport);
    const result: ReplicaWaitResult = report === undefined || report.error !== undefined ? { error: report?.error ?? error ?? "no result" } : { report };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  // No target: the figures are for the README ("Running on Redis Sentinel"), not a pass/fail bar.
  targetRows: (): TargetRow[] => [],
  render: (lines, r) => {
    lines.push("## REDIS_WAIT_REPLICAS cost (issue 14)", "");
    if (r.report === undefined) {
      lines.push(`Not measured: ${r.error}`, "");
      return;
    }
    lines.push(
      `bench/replica-wait-bench.ts: a private primary and one replica (redis-server --replicaof) on loopback; two RedisStores on the primary, one without WAIT and one with REDIS_WAIT_REPLICAS=1 (the store calls, no gRPC), run CreateSession and SetData in ${r.report.rounds} interleaved rounds of ${r.report.roundMs} ms each (A B, B A, ...), with 1 call in flight and with 16. Latencies and calls pooled per variant; ratios within the same run.`,
      "",
      renderReplicaWait(r.report),
      "",
    );
  },
  failed: (r) => r.error !== undefined,
};
