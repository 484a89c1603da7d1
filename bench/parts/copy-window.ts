/** How long another process's write takes to reach a READ_CACHE_MAX_AGE copy (bench/copy-window-bench.ts, in its own process). */
import type { BenchPart, TargetRow } from "../part.js";
import { runScript } from "../processes.js";
import { renderCopyWindow, type CopyWindowReport } from "../copy-window-bench.js";

export type CopyWindowResult = { readonly report: CopyWindowReport; readonly error?: undefined } | { readonly report?: undefined; readonly error: string };

const TIMEOUT_MS = 5 * 60_000;

export const copyWindowPart: BenchPart<CopyWindowResult> = {
  name: "copy-window",
  async run() {
    console.log("the window of a READ_CACHE_MAX_AGE copy, via bench/copy-window-bench.ts");
    const { last, error } = await runScript("copy-window-bench.ts", [], { BENCH_CHILD: "1" }, TIMEOUT_MS);
    const report = last === undefined ? undefined : (JSON.parse(last) as CopyWindowReport);
    const result: CopyWindowResult = report === undefined || report.error !== undefined ? { error: report?.error ?? error ?? "no result" } : { report };
    if (result.error !== undefined) console.log(`  failed: ${result.error}`);
    return result;
  },
  // No target: the figure is what the README's "Reading from a copy" promises, measured.
  targetRows: (): TargetRow[] => [],
  render: (lines, r) => {
    lines.push("## The window of a copy (READ_CACHE_MAX_AGE)", "");
    if (r.report === undefined) {
      lines.push(`Not measured: ${r.error}`, "");
      return;
    }
    lines.push(
      "bench/copy-window-bench.ts: two service processes (src/main.ts through tsx) on one private redis-server, A with READ_CACHE_MAX_AGE=60s and B without copies; per sample a get through A (its copy warm), an update of the session's metadata through B, then gets through A back to back from the moment B's answer arrives until one shows the update. The window is at most the time to that first fresh answer (each get's own round trip is in it; a get from the copy alone is the last column).",
      "",
      renderCopyWindow(r.report),
      "",
    );
  },
  failed: (r) => r.error !== undefined,
};
