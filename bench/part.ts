/**
 * What a part of the benchmark is. run.ts holds the list of parts (PARTS in
 * run.ts); a new part is one module under bench/parts/ that exports a
 * BenchPart, added to that list.
 */
import type { MachineInfo } from "./processes.js";

/** What every part is given. */
export interface PartContext {
  readonly machine: MachineInfo;
  /** BENCH_LOG_LEVEL: the service's log level. */
  readonly logLevel: string;
  /** The Node flags `npm run start:prod` runs with. */
  readonly productionFlags: readonly string[];
}

/** A row of the Targets table. */
export interface TargetRow {
  readonly measure: string;
  readonly value: string;
  readonly target: string;
  /** undefined: not judged (the part did not run). */
  readonly ok: boolean | undefined;
}

/** The results of the parts that ran, by part. */
export interface PartResults {
  get<R>(part: BenchPart<R>): R | undefined;
}

export interface BenchPart<R> {
  /** Its name in BENCH_PARTS. */
  readonly name: string;
  /** Measures. A failure to measure belongs in R (the other parts still run), not in a rejection. */
  run(context: PartContext): Promise<R>;
  /** Its rows of the Targets table; `result` is undefined when the part did not run. */
  targetRows(result: R | undefined): TargetRow[];
  /** Appends its sections of RESULTS.md. */
  render(lines: string[], result: R, context: PartContext): void;
  /** True when the run measured nothing trustworthy (the exit code says so). */
  failed(result: R): boolean;
}

/**
 * A part for the list in run.ts, its result type erased: the runner only ever
 * hands a part the result that same part returned, so this is safe.
 */
export function listed<R>(part: BenchPart<R>): BenchPart<unknown> {
  return part as unknown as BenchPart<unknown>;
}
