/** ListSessions at 10k/100k/1M live sessions and expiry lag at 1M (bench/scale-bench.ts, in its own process; issue 10). */
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { expiryPass, renderScale, type ScaleReport } from "../scale-bench.js";

export type ScaleResult = { readonly report: ScaleReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const SCALE_TIMEOUT_MS = 60 * 60_000;
/** ListSessions must not slow down with the population: p50 at the largest size within this factor of the smallest. */
const FLAT_FACTOR = 2;
/** Issue 10's goal (expiryPass in scale-bench.ts judges it). */
const EXPIRY_P99_MS = 50;

export const scalePart: BenchPart<ScaleResult> = {
  name: "scale",
  async run() {
    console.log("ListSessions and expiry at scale via bench/scale-bench.ts");
    const { last, error } = await runScript("scale-bench.ts", [], { BENCH_CHILD: "1" }, SCALE_TIMEOUT_MS);
    const result: ScaleResult = last === undefined ? { error: error ?? "no result" } : { report: JSON.parse(last) as ScaleReport };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  targetRows: (s) => {
    const rows: TargetRow[] = [];
    const report = s?.report;
    const first = report?.list[0];
    const last = report?.list.at(-1);
    if (report === undefined || first === undefined || last === undefined) {
      return [{ measure: "ListSessions by user flat from 10k to 1M live; expiry lag p99 at 1M live, 1k/s", value: s === undefined ? "not run (BENCH_PARTS)" : `not measured: ${s.error ?? "no rows"}`, target: "", ok: s === undefined ? undefined : false }];
    }
    const factor = last.latency.p50 / first.latency.p50;
    rows.push({
      measure: `ListSessions by user (100 returned), p50 at ${last.live.toLocaleString("en-US")} live over p50 at ${first.live.toLocaleString("en-US")} (${last.latency.p50.toFixed(2)} / ${first.latency.p50.toFixed(2)} ms)`,
      value: `${factor.toFixed(2)}×`,
      target: `≤ ${FLAT_FACTOR}× (flat)`,
      ok: factor <= FLAT_FACTOR,
    });
    const e = report.expiry;
    rows.push(
      e === undefined
        ? { measure: "Expiry lag p99 at 1M live sessions, 1k expirations/s", value: `not measured${report.error === undefined ? "" : `: ${report.error}`}`, target: `< ${EXPIRY_P99_MS} ms`, ok: false }
        : {
            measure:
              `Expiry lag p99, expire_time → EXPIRED at a remote watcher, ${e.live.toLocaleString("en-US")} live, ${e.rate}/s (${e.events} of ${e.probes} events, ${e.late} probes late` +
              `${report.reference === undefined ? "" : `; same rounds at ${report.reference.live.toLocaleString("en-US")} live: ${report.reference.lag.p99} ms`})`,
            value: `${e.lag.p99} ms`,
            target: `< ${EXPIRY_P99_MS} ms`,
            ok: expiryPass(e),
          },
    );
    return rows;
  },
  render: (lines, s) => {
    lines.push(s.report === undefined ? `## ListSessions and expiry at scale\n\nNot measured: ${s.error}\n` : renderScale(s.report));
  },
  failed: (s) => s.error !== undefined || s.report?.error !== undefined,
};
