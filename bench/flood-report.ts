/**
 * The flood benchmark's result (bench/flood-bench.ts) and its section of
 * bench/RESULTS.md.
 */
export interface FloodPhase {
  readonly name: string;
  /** What the attacker held during the measurement, e.g. "3,900 of 20,000 connections held". */
  readonly attack: string;
  readonly calls: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Peak resident set size of the service during the phase, bytes. */
  readonly peakRss: number;
  /** Did /healthz answer (on a new connection) during the phase? */
  readonly healthz: string;
}

export interface FloodReport {
  readonly concurrency: number;
  readonly durationMs: number;
  readonly phases: readonly FloodPhase[];
}

export function renderFlood(lines: string[], report: FloodReport): void {
  lines.push("## Under attack: idle-connection flood and stream flood", "");
  lines.push(
    `Authenticated GetSession (API key, gRPC over h2c, ${report.concurrency} concurrent callers on one connection opened before the flood) for ${report.durationMs / 1000} s per phase, against the service with its default limits, on a private redis-server. The attacker is a process of its own on loopback (bench/flood-client.ts): 20,000 idle HTTP/2 connections (preface and an empty SETTINGS frame each) from 40 local addresses, or 20,000 unauthenticated Health/Watch streams on 4 connections. Peak RSS is the service's, sampled every 200 ms. "/healthz" is one GET on a new connection during the phase.`,
    "",
  );
  lines.push("| Phase | attacker holds | GetSession p50 ms | p99 ms | calls (failed) | service peak RSS | /healthz |");
  lines.push("|---|---|---:|---:|---:|---:|---|");
  for (const p of report.phases) {
    lines.push(
      `| ${p.name} | ${p.attack} | ${p.p50Ms.toFixed(2)} | ${p.p99Ms.toFixed(2)} | ${p.calls} (${p.failed}${p.firstError === undefined ? "" : `: ${p.firstError}`}) | ${(p.peakRss / 2 ** 20).toFixed(0)} MiB | ${p.healthz} |`,
    );
  }
  lines.push("");
}
