/**
 * One benchmark phase: N concurrent callers repeat one operation for a fixed
 * time, after a warm-up whose calls are not counted. Shared by the load
 * generator (which runs phases) and the runner (which reports them).
 */

/** What the runner asks the load generator to do. */
export interface PhaseSpec {
  /** Row label, e.g. "CreateSession". */
  readonly name: string;
  readonly target: "service" | "health" | "direct";
  readonly op: "create" | "get" | "extend" | "close" | "check";
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

/** What one run of a phase measured. */
export interface PhaseSample {
  /** Calls that started inside the measured window and succeeded. */
  readonly ops: number;
  /** Calls that started inside the measured window and failed. */
  readonly errors: number;
  /** First error message seen, to tell what went wrong. */
  readonly firstError?: string;
  /** Length of the measured window: durationMs, or less when the pool of sessions ran out. */
  readonly windowMs: number;
  /** Latency of each successful call in the window, ms, sorted. */
  readonly latencies: Float64Array;
  /** Successful calls over the whole phase, warm-up included: the divisor for CPU time, which cannot be split by window. */
  readonly totalOps: number;
  /** CPU time the load generator spent on the whole phase, µs. */
  readonly clientCpuUs: number;
}

/** A sample with the CPU the other processes spent meanwhile, measured by the runner. */
export interface MeasuredSample extends PhaseSample {
  /** CPU time of the server process over the phase, µs (0 for the direct baseline, which has no server). */
  readonly serverCpuUs: number;
  /** Of serverCpuUs, the time the server's main thread spent in GC pauses, µs. */
  readonly serverGcUs: number;
  /** CPU time of redis-server over the phase, µs. */
  readonly redisCpuUs: number;
}

/** One operation's numbers, over every run (round) of its phase. */
export interface PhaseResult {
  readonly name: string;
  readonly target: PhaseSpec["target"];
  readonly runs: number;
  readonly ops: number;
  readonly errors: number;
  readonly firstError?: string;
  /** Total measured time over all runs. */
  readonly windowMs: number;
  readonly opsPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Throughput of each run, to show how steady the machine was. */
  readonly runOpsPerSec: readonly number[];
  /** The server's CPU time per successful call in each run, µs (as serverCpuUsPerOp, run by run). */
  readonly runServerCpuUsPerOp: readonly number[];
  /** CPU time per successful call, µs: of the server, the load generator and redis-server. */
  readonly serverCpuUsPerOp: number;
  /** GC pauses of the server per successful call, µs (part of serverCpuUsPerOp). */
  readonly serverGcUsPerOp: number;
  readonly clientCpuUsPerOp: number;
  readonly redisCpuUsPerOp: number;
}

/** Thrown by an operation that has no session left to act on; ends the phase early. */
export class PoolExhausted extends Error {
  override readonly name = "PoolExhausted";
}

/** The q-quantile (0..1) of sorted values, nearest-rank. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/**
 * Runs `op` from `spec.concurrency` callers until the window ends. Latency is
 * that of each call as the caller sees it, start to settle.
 */
export async function runPhase(spec: PhaseSpec, op: () => Promise<void>): Promise<PhaseSample> {
  const start = performance.now();
  const measureFrom = start + spec.warmupMs;
  let end = measureFrom + spec.durationMs;
  let latencies = new Float64Array(1 << 16);
  let ops = 0;
  let totalOps = 0;
  let errors = 0;
  let firstError: string | undefined;
  const cpuBefore = process.cpuUsage();

  const caller = async (): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      let failed = false;
      try {
        await op();
      } catch (e) {
        if (e instanceof PoolExhausted) {
          end = Math.min(end, performance.now());
          return;
        }
        failed = true;
        firstError ??= e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      }
      if (!failed) totalOps++;
      if (t0 < measureFrom) continue;
      if (failed) {
        errors++;
        continue;
      }
      if (ops === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[ops++] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, caller));

  const cpu = process.cpuUsage(cpuBefore);
  const sample = {
    ops,
    errors,
    windowMs: Math.max(0, end - measureFrom),
    latencies: latencies.slice(0, ops).sort(),
    totalOps,
    clientCpuUs: cpu.user + cpu.system,
  };
  return firstError === undefined ? sample : { ...sample, firstError };
}

/** Adds up the runs of one phase: throughput over the total window, percentiles over every call. */
export function summarize(spec: Pick<PhaseSpec, "name" | "target">, samples: readonly MeasuredSample[]): PhaseResult {
  const ops = samples.reduce((n, s) => n + s.ops, 0);
  const windowMs = samples.reduce((n, s) => n + s.windowMs, 0);
  const all = new Float64Array(ops);
  let at = 0;
  for (const s of samples) {
    all.set(s.latencies, at);
    at += s.latencies.length;
  }
  all.sort();
  const firstError = samples.find((s) => s.firstError !== undefined)?.firstError;
  const result: PhaseResult = {
    name: spec.name,
    target: spec.target,
    runs: samples.length,
    ops,
    errors: samples.reduce((n, s) => n + s.errors, 0),
    windowMs,
    opsPerSec: windowMs > 0 ? (ops / windowMs) * 1000 : 0,
    p50Ms: quantile(all, 0.5),
    p99Ms: quantile(all, 0.99),
    runOpsPerSec: samples.map((s) => (s.windowMs > 0 ? (s.ops / s.windowMs) * 1000 : 0)),
    runServerCpuUsPerOp: samples.map((s) => (s.totalOps > 0 ? s.serverCpuUs / s.totalOps : Number.NaN)),
    serverCpuUsPerOp: perOp(samples, (s) => s.serverCpuUs),
    serverGcUsPerOp: perOp(samples, (s) => s.serverGcUs),
    clientCpuUsPerOp: perOp(samples, (s) => s.clientCpuUs),
    redisCpuUsPerOp: perOp(samples, (s) => s.redisCpuUs),
  };
  return firstError === undefined ? result : { ...result, firstError };
}

function perOp(samples: readonly MeasuredSample[], cpu: (s: MeasuredSample) => number): number {
  const ops = samples.reduce((n, s) => n + s.totalOps, 0);
  return ops > 0 ? samples.reduce((n, s) => n + cpu(s), 0) / ops : Number.NaN;
}
