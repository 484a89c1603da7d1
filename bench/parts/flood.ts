/** Under attack (issue 11): bench/flood-bench.ts, in its own process. */
import type { FloodReport } from "../flood-report.js";
import { renderFlood } from "../flood-report.js";
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";

/** How long the flood benchmark may take before it is abandoned. */
const FLOOD_TIMEOUT_MS = 300_000;

export type FloodResult = { readonly report: FloodReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

export const floodPart: BenchPart<FloodResult> = {
  name: "flood",
  async run({ productionFlags }) {
    console.log("under attack via bench/flood-bench.ts");
    const { last, error } = await runScript("flood-bench.ts", [], { FLOOD_BENCH_NODE_FLAGS: productionFlags.join(" ") }, FLOOD_TIMEOUT_MS);
    const result: FloodResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as FloodReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (f) => {
    if (f?.report === undefined) {
      return [{ measure: "Authenticated GetSession under a 20,000-connection and a 20,000-stream flood", value: f === undefined ? "not run (BENCH_PARTS)" : `not measured: ${f.error}`, target: "", ok: f === undefined ? undefined : false }];
    }
    const base = f.report.phases[0];
    const rows: TargetRow[] = [];
    for (const p of f.report.phases.slice(1, 3)) {
      rows.push({
        measure: `${p.name}: authenticated GetSession p99 / without the flood; service peak RSS (without)`,
        value: `${p.p99Ms.toFixed(1)} ms / ${base?.p99Ms.toFixed(1) ?? "?"} ms; ${(p.peakRss / 2 ** 20).toFixed(0)} MiB (${((base?.peakRss ?? 0) / 2 ** 20).toFixed(0)} MiB)`,
        target: "every call answered, /healthz answered",
        ok: p.failed === 0 && p.healthz.startsWith("200"),
      });
    }
    return rows;
  },
  render: (lines, f) => {
    if (f.report !== undefined) renderFlood(lines, f.report);
    else lines.push("## Under attack", "", `Not measured: ${f.error}`, "");
  },
  failed: (f) => f.error !== undefined,
};
