/**
 * What the CreateSession target leaves a create, from the wire bench's own
 * rounds (issue 10): the target is a throughput ratio, so it sets a ceiling on
 * the CPU a create may cost.
 *
 * - One Node thread answers at most 1 s / (its CPU per call) calls a second,
 *   so a WORKERS=1 service reaches 0.65× the bare Check's rate only if a
 *   create costs it at most 1 s / (0.65 × Check calls/s).
 * - However many workers, the machine's cores run the service, redis-server
 *   and the load generator together, so the sum of their CPU per create must
 *   stay under cores × 1 s / (0.65 × Check calls/s).
 *
 * Both ceilings come from the same round as the figures set against them.
 */
import { median } from "./statistics.js";
import type { WireReport, WireRow } from "./wire-bench.js";

/**
 * sessiond WORKERS=1 with the work of a create that a setting can turn off
 * turned off: metadata encryption, the RPC log line and the audit record. Not
 * a way to run it (a production service keeps all three): what is left is
 * the create every setting keeps, set against the same ceiling.
 */
export const STRIPPED = "sessiond WORKERS=1 ALLOW_PLAINTEXT=true LOG_LEVEL=warn AUDIT_LOG=off";

export interface BudgetRow {
  readonly loader: string;
  /** Median over rounds of 1 s / (goal × the bare Check's calls/s), µs. */
  readonly threadBudgetUs: number;
  /** The bare grpc-js + ioredis create's server CPU per call (the floor), µs. */
  readonly floorUs: number;
  readonly floorFits: number;
  readonly sessiondUs: number;
  readonly sessiondFits: number;
  /** STRIPPED's service CPU per create, µs (NaN when the run has no such row). */
  readonly strippedUs: number;
  readonly strippedFits: number;
  /** cores × the thread budget, µs. */
  readonly machineBudgetUs: number;
  /** sessiond WORKERS=1: service + redis-server + load generator CPU per create, µs. */
  readonly total1Us: number;
  readonly total1Fits: number;
  readonly total2Us: number;
  readonly total2Fits: number;
  readonly rounds: number;
}

/** Per h2load load (the only loads whose generator's CPU is measured), the ceilings and what fits under them. */
export function createBudget(report: WireReport, goal: number): BudgetRow[] {
  const cores = report.cores ?? Number.NaN;
  const out: BudgetRow[] = [];
  for (const loader of new Set(report.rows.map((r) => r.loader))) {
    if (!loader.startsWith("h2load")) continue;
    const find = (server: string, op: string): WireRow | undefined => report.rows.find((r) => r.server === server && r.op === op && r.loader === loader);
    const check = find("grpc-js (bare)", "Health/Check");
    const floor = find("grpc-js + ioredis (bare)", "CreateSession");
    const w1 = find("sessiond WORKERS=1", "CreateSession");
    const w2 = find("sessiond WORKERS=2", "CreateSession");
    const stripped = find(STRIPPED, "CreateSession");
    if (check === undefined || floor === undefined || w1 === undefined || w2 === undefined) continue;
    const thread = check.rounds.map((c) => 1e6 / (goal * c.rps));
    const service = (row: WireRow): number[] => row.rounds.map((x) => x.cpuUsPerCall);
    const total = (row: WireRow): number[] => row.rounds.map((x) => x.cpuUsPerCall + (x.redisUsPerCall ?? Number.NaN) + (x.loaderUsPerCall ?? Number.NaN));
    const machine = thread.map((t) => cores * t);
    const fits = (xs: number[], budget: number[]): number => xs.filter((x, i) => x <= (budget[i] ?? Number.NaN)).length;
    out.push({
      loader,
      threadBudgetUs: median(thread),
      floorUs: median(service(floor)),
      floorFits: fits(service(floor), thread),
      sessiondUs: median(service(w1)),
      sessiondFits: fits(service(w1), thread),
      strippedUs: stripped === undefined ? Number.NaN : median(service(stripped)),
      strippedFits: stripped === undefined ? 0 : fits(service(stripped), thread),
      machineBudgetUs: median(machine),
      total1Us: median(total(w1)),
      total1Fits: fits(total(w1), machine),
      total2Us: median(total(w2)),
      total2Fits: fits(total(w2), machine),
      rounds: thread.length,
    });
  }
  return out;
}

export function renderCreateBudget(report: WireReport, goal: number): string[] {
  const rows = createBudget(report, goal);
  if (rows.length === 0) return [];
  const us = (x: number): string => (Number.isFinite(x) ? `${Math.round(x)} µs` : "n/a");
  const lines = [
    `### What CreateSession ≥ ${goal}× leaves a create (bench/create-budget.ts)`,
    "",
    `A throughput ratio caps CPU per call. One Node thread answers at most 1 s / (its CPU per call) calls a second, so a WORKERS=1 service meets the target only if a create costs it at most 1 s / (${goal} × the bare Check's calls/s). ` +
      `With any number of workers, the ${report.cores ?? "?"} cores run the service, redis-server and the load generator together, so their CPU per create summed must stay under ${report.cores ?? "?"} × that. ` +
      "Each ceiling is taken from the same round as the figures set against it; medians over rounds, and in how many rounds the figure fits. " +
      "The floor is the bare grpc-js server whose CreateSession makes one ioredis call and nothing else; sessiond's create adds validation, metadata encryption (required with Redis unless ALLOW_PLAINTEXT), the index tags, an RPC log line and an audit record. " +
      "The stripped sessiond is the same build with encryption, the log line and the audit record turned off (ALLOW_PLAINTEXT=true LOG_LEVEL=warn AUDIT_LOG=off): what every setting keeps of a create.",
    "",
    `| load | one thread's ceiling | floor (service CPU) | sessiond WORKERS=1 (service CPU) | stripped sessiond WORKERS=1 (service CPU) | machine ceiling | sessiond WORKERS=1, service + redis-server + h2load | sessiond WORKERS=2, the same |`,
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    const of = (n: number): string => `fits ${n} of ${r.rounds}`;
    lines.push(
      `| ${r.loader} | ${us(r.threadBudgetUs)} | ${us(r.floorUs)} (${of(r.floorFits)}) | ${us(r.sessiondUs)} (${of(r.sessiondFits)}) | ${Number.isFinite(r.strippedUs) ? `${us(r.strippedUs)} (${of(r.strippedFits)})` : "n/a"} | ${us(r.machineBudgetUs)} | ${us(r.total1Us)} (${of(r.total1Fits)}) | ${us(r.total2Us)} (${of(r.total2Fits)}) |`,
    );
  }
  lines.push("");
  return lines;
}
