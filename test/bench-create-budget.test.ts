import { test } from "node:test";
import assert from "node:assert/strict";
import { createBudget, renderCreateBudget, STRIPPED } from "../bench/create-budget.js";
import type { PhaseNumbers, WireReport, WireRow } from "../bench/wire-bench.js";

const phase = (rps: number, cpu: number, redis = 0, loader = 0): PhaseNumbers => ({ rps, cpuUsPerCall: cpu, redisUsPerCall: redis, loaderUsPerCall: loader, errors: 0 });

function row(server: string, op: string, loader: string, rounds: PhaseNumbers[]): WireRow {
  return { server, op, loader, rounds } as WireRow;
}

/** Two rounds of one h2load load: the bare Check at 20,000 and then 10,000 calls/s. */
function report(loader = "h2load 1×64"): WireReport {
  return {
    rounds: 2,
    phaseMs: 3000,
    h2load: "h2load test",
    cores: 2,
    rows: [
      row("grpc-js (bare)", "Health/Check", loader, [phase(20_000, 50), phase(10_000, 100)]),
      row("grpc-js + ioredis (bare)", "CreateSession", loader, [phase(12_000, 80), phase(6_000, 150)]),
      row("sessiond WORKERS=1", "CreateSession", loader, [phase(8_000, 100, 30, 5), phase(5_000, 160, 40, 10)]),
      row("sessiond WORKERS=2", "CreateSession", loader, [phase(8_500, 140, 50, 6), phase(5_000, 200, 60, 10)]),
    ] as WireRow[],
  };
}

test("create budget: one thread's ceiling is 1 s / (goal × the Check's rate) of the same round", () => {
  const [r] = createBudget(report(), 0.5);
  assert.ok(r !== undefined);
  // Rounds: 1e6 / (0.5 × 20,000) = 100 µs and 1e6 / (0.5 × 10,000) = 200 µs; median 150.
  assert.equal(r.threadBudgetUs, 150);
  assert.equal(r.machineBudgetUs, 300);
  // The floor (80, 150) fits both rounds' ceilings (100, 200); sessiond (100, 160) fits both too.
  assert.equal(r.floorFits, 2);
  assert.equal(r.sessiondFits, 2);
  assert.equal(r.rounds, 2);
});

test("create budget: a figure is set against its own round's ceiling, not the median's", () => {
  const [r] = createBudget(report(), 0.65);
  assert.ok(r !== undefined);
  // Ceilings 76.9 and 153.8 µs: the floor's 80 misses the first round, its 150 fits the second.
  assert.equal(r.floorFits, 1);
  assert.equal(r.sessiondFits, 0);
  // Summed CPU: WORKERS=1 135 and 210 against 153.8 and 307.7; WORKERS=2 196 and 270.
  assert.equal(r.total1Us, (135 + 210) / 2);
  assert.equal(r.total1Fits, 2);
  assert.equal(r.total2Fits, 1);
});

test("create budget: only h2load loads (whose generator's CPU is measured), and the table names them", () => {
  const both: WireReport = { ...report(), rows: [...report().rows, ...report("grpc-js 64").rows] };
  assert.deepEqual(
    createBudget(both, 0.65).map((r) => r.loader),
    ["h2load 1×64"],
  );
  const text = renderCreateBudget(both, 0.65).join("\n");
  assert.match(text, /\| h2load 1×64 \| 115 µs \| 115 µs \(fits 1 of 2\) \| 130 µs \(fits 0 of 2\) \| n\/a \| 231 µs \|/);
  assert.doesNotMatch(text, /grpc-js 64 \|/);
});

test("create budget: the stripped sessiond is set against the same rounds' ceilings when the run has it", () => {
  const withStripped: WireReport = { ...report(), rows: [...report().rows, row(STRIPPED, "CreateSession", "h2load 1×64", [phase(9_000, 76), phase(5_500, 140)])] };
  const [r] = createBudget(withStripped, 0.65);
  assert.ok(r !== undefined);
  // Ceilings 76.9 and 153.8 µs: 76 and 140 fit both; the full sessiond (100, 160) fits neither.
  assert.equal(r.strippedUs, (76 + 140) / 2);
  assert.equal(r.strippedFits, 2);
  assert.equal(r.sessiondFits, 0);
  assert.match(renderCreateBudget(withStripped, 0.65).join("\n"), /\| 130 µs \(fits 0 of 2\) \| 108 µs \(fits 2 of 2\) \| 231 µs \|/);
  const [without] = createBudget(report(), 0.65);
  assert.ok(without !== undefined && Number.isNaN(without.strippedUs) && without.strippedFits === 0);
});

test("create budget: nothing to say without the rows it needs", () => {
  const partial: WireReport = { ...report(), rows: report().rows.filter((r) => r.server !== "sessiond WORKERS=2") };
  assert.deepEqual(createBudget(partial, 0.65), []);
  assert.deepEqual(renderCreateBudget(partial, 0.65), []);
});
