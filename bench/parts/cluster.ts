/** The store on a 3-primary loopback Redis Cluster next to one redis-server (bench/cluster-bench.ts, in its own process; issue 14). */
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { renderCluster, type ClusterReport } from "../cluster-bench.js";

export type ClusterResult = { readonly report: ClusterReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const CLUSTER_TIMEOUT_MS = 30 * 60_000;
/** Throughput on the cluster over throughput on one primary, per operation. */
const MIN_RATIO = 0.8;
const EXPIRY_P99_MS = 50;

export const clusterPart: BenchPart<ClusterResult> = {
  name: "cluster",
  async run() {
    console.log("Redis Cluster vs one primary via bench/cluster-bench.ts");
    const { last, error } = await runScript("cluster-bench.ts", [], { BENCH_CHILD: "1" }, CLUSTER_TIMEOUT_MS);
    const result: ClusterResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as ClusterReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (c) => {
    const t = c?.report?.throughput;
    if (c === undefined || c.report === undefined || t === undefined) {
      return [{ measure: "Store throughput on a 3-primary cluster / one primary", value: c === undefined ? "not run (BENCH_PARTS)" : `not measured: ${c.error ?? c.report?.error ?? "no rows"}`, target: `≥ ${MIN_RATIO}×`, ok: c === undefined ? undefined : false }];
    }
    const rows: TargetRow[] = Object.entries(t.ratio).map(([op, ratio]) => ({
      measure: `Store ${op} throughput, 3-primary cluster / one primary (interleaved rounds)`,
      value: `${ratio.toFixed(2)}×`,
      target: `≥ ${MIN_RATIO}×`,
      ok: ratio >= MIN_RATIO,
    }));
    const e = c.report.expiry;
    rows.push(
      e === undefined
        ? { measure: "Expiry lag p99 on the cluster", value: "not measured", target: `< ${EXPIRY_P99_MS} ms`, ok: false }
        : { measure: `Expiry lag p99 on the cluster, ${e.live.toLocaleString("en-US")} live, ${e.rate}/s (${e.events} of ${e.probes} events)`, value: `${e.lag.p99} ms`, target: `< ${EXPIRY_P99_MS} ms`, ok: e.lag.p99 < EXPIRY_P99_MS && e.events === e.probes },
    );
    return rows;
  },
  render: (lines, c) => {
    lines.push(c.report === undefined ? `## Redis Cluster\n\nNot measured: ${c.error}\n` : renderCluster(c.report));
  },
  failed: (c) => c.error !== undefined || c.report?.error !== undefined,
};
