/**
 * The entry point of a bench module that bench/run.ts runs as a child process
 * (BENCH_CHILD=1): there only the report's JSON line is printed, for run.ts to
 * render; run by hand, the rendered text comes first.
 */
import { fileURLToPath } from "node:url";

export async function runAsBenchMain<R extends { readonly error?: string }>(
  moduleUrl: string,
  run: (log: (line: string) => void) => Promise<R>,
  render: (report: R) => string,
): Promise<void> {
  if (process.argv[1] === undefined || fileURLToPath(moduleUrl) !== process.argv[1]) return;
  const report = await run((line) => process.stdout.write(`${line}\n`));
  if (process.env["BENCH_CHILD"] !== "1") process.stdout.write(`${render(report)}\n`);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.error === undefined ? 0 : 1);
}
