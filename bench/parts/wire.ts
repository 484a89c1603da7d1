/** Wire cost against bare Node gRPC servers, WORKERS=1 and 2 (bench/wire-bench.ts, in its own process; issue 10). */
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { renderWire, wireTargets, type WireReport } from "../wire-bench.js";

export type WireResult = { readonly report: WireReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const WIRE_TIMEOUT_MS = 40 * 60_000;

export const wirePart: BenchPart<WireResult> = {
  name: "wire",
  async run() {
    console.log("wire cost via bench/wire-bench.ts");
    const { last, error } = await runScript("wire-bench.ts", [], { BENCH_CHILD: "1" }, WIRE_TIMEOUT_MS);
    const result: WireResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as WireReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (w) => {
    if (w?.report === undefined) {
      return [{ measure: "GetSession ≥ 0.8× and CreateSession ≥ 0.65× a bare grpc-js server's Health/Check (bench/wire-bench.ts)", value: w === undefined ? "not run (BENCH_PARTS)" : `not measured: ${w.error}`, target: "", ok: w === undefined ? undefined : false }];
    }
    // The Targets table keeps the loads; every load is in the section.
    return wireTargets(w.report)
      .filter((t) => Number.isFinite(t.goal))
      .filter((t) => (t.what.startsWith("sessiond WORKERS=1") && t.loader !== "h2load 4×16") || (t.what.startsWith("sessiond WORKERS=2") && t.loader === "h2load 4×16"))
      .map(
        (t): TargetRow => ({
          measure: `${t.what} (${t.loader}; median of interleaved rounds ${t.detail}, spread ${t.spread}${t.what.startsWith("sessiond WORKERS=2") ? "; 2 workers on a 2-core machine shared with the load generator and redis-server: not a fair throughput test, CPU per call is the figure that carries over" : ""})`,
          value: `${t.median.toFixed(2)}×`,
          target: `${t.atMost ? "≤" : "≥"} ${t.goal}×`,
          ok: t.pass,
        }),
      );
  },
  render: (lines, w) => {
    lines.push(w.report === undefined ? `## Wire cost against bare Node gRPC servers\n\nNot measured: ${w.error}\n` : renderWire(w.report));
  },
  failed: (w) => w.error !== undefined || (w.report?.rows.some((r) => r.rounds.some((x) => x.errors > 0)) ?? false),
};
