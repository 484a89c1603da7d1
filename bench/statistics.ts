/** Ratios and medians over a run's rounds. */
import type { PhaseResult } from "./phase.js";

export function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((x, y) => x - y);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Each round's ratio of a's throughput to b's. */
export function roundRatios(a: PhaseResult, b: PhaseResult): number[] {
  return a.runOpsPerSec.map((x, i) => x / (b.runOpsPerSec[i] ?? Number.NaN));
}

/**
 * Each round's ratio of b's server CPU per call to a's: the throughput ratio
 * of a to b that a server with cores of its own would show.
 */
export function roundCpuRatios(a: PhaseResult, b: PhaseResult): number[] {
  return a.runServerCpuUsPerOp.map((x, i) => (b.runServerCpuUsPerOp[i] ?? Number.NaN) / x);
}

/** Lowest and highest of per-round ratios, e.g. "0.64–0.87". */
export function spread(ratios: readonly number[]): string {
  const finite = ratios.filter(Number.isFinite);
  return finite.length === 0 ? "-" : `${Math.min(...finite).toFixed(2)}–${Math.max(...finite).toFixed(2)}`;
}

/** The median over rounds of (a's throughput / b's throughput in the same round). */
export function medianRatio(a: PhaseResult, b: PhaseResult): number {
  return median(roundRatios(a, b));
}


/** Calls per second the machine's cores could serve if all three processes' CPU per call were the only limit. */
export function cpuCeiling(p: PhaseResult, cores: number): number {
  return (cores * 1e6) / (p.serverCpuUsPerOp + p.clientCpuUsPerOp + p.redisCpuUsPerOp);
}
