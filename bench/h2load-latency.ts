/**
 * Latency quantiles of an h2load run, read from its `--log-file`: h2load
 * prints only the minimum, maximum, mean and deviation of its request times,
 * and the wire bench reports p50 and p99 for every load.
 *
 * The log has one tab-separated row per request: its start (µs since the
 * epoch), the HTTP status (-1 for a stream that failed) and the µs until the
 * end of its response. Only answered requests (HTTP 200) count, as only
 * answered calls count under the grpc-js load.
 */

export interface LatencyQuantiles {
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Rows with HTTP status 200. */
  readonly answered: number;
}

export function latencyQuantiles(log: string): LatencyQuantiles {
  const micros: number[] = [];
  for (const row of log.split("\n")) {
    const [, status, duration] = row.split("\t");
    if (status !== "200" || duration === undefined) continue;
    const us = Number(duration);
    if (Number.isFinite(us)) micros.push(us);
  }
  micros.sort((a, b) => a - b);
  // The same quantile as bench/grpc-js-load.ts: the value at floor(q × n).
  const at = (q: number): number => (micros[Math.min(micros.length - 1, Math.floor(q * micros.length))] ?? Number.NaN) / 1000;
  return { p50Ms: at(0.5), p99Ms: at(0.99), answered: micros.length };
}
