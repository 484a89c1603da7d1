import { test } from "node:test";
import assert from "node:assert/strict";
import { ROUNDS } from "../bench/settings.js";
import { roundOrder, SERVICE_OPERATIONS, throughputPart, type OpKey, type Throughput, type VariantResult } from "../bench/parts/throughput.js";
import type { PhaseResult } from "../bench/phase.js";

const names = (round: number): string[] => roundOrder(SERVICE_OPERATIONS, round).map((o) => o.name);

test("throughput rounds: Health/Check runs next to both operations compared with it, in every round", () => {
  for (let round = 1; round <= ROUNDS; round++) {
    const order = names(round);
    const check = order.indexOf("Health/Check");
    const neighbours = [order[check - 1], order[check + 1]].sort();
    assert.deepEqual(neighbours, ["CreateSession", "GetSession"], `round ${round}: ${order.join(", ")}`);
  }
});

test("throughput rounds: no operation always follows the same one, so a fixed position biases no ratio", () => {
  const predecessors = new Map<string, Set<string | undefined>>();
  for (let round = 1; round <= ROUNDS; round++) {
    const order = names(round);
    order.forEach((name, i) => {
      const seen = predecessors.get(name) ?? new Set<string | undefined>();
      seen.add(order[i - 1]);
      predecessors.set(name, seen);
    });
  }
  for (const [name, seen] of predecessors) assert.ok(seen.size >= 2, `${name} always follows ${[...seen].join()}`);
});

test("throughput rounds: as many rounds in each order, every operation once per round", () => {
  assert.equal(ROUNDS % 2, 0);
  for (let round = 1; round <= ROUNDS; round++) assert.deepEqual([...names(round)].sort(), SERVICE_OPERATIONS.map((o) => o.name).sort());
  assert.deepEqual(names(2), [...names(1)].reverse());
});

/** A phase whose every round ran at `opsPerSec` with `serverUs` µs of the service's CPU per call. */
function phase(name: string, opsPerSec: number, serverUs: number): PhaseResult {
  return {
    name,
    target: name === "Health/Check" ? "health" : "service",
    runs: ROUNDS,
    ops: opsPerSec * ROUNDS,
    errors: 0,
    windowMs: 1000 * ROUNDS,
    opsPerSec,
    p50Ms: 1,
    p99Ms: 2,
    runOpsPerSec: Array.from({ length: ROUNDS }, () => opsPerSec),
    runServerCpuUsPerOp: Array.from({ length: ROUNDS }, () => serverUs),
    serverCpuUsPerOp: serverUs,
    serverGcUsPerOp: 0,
    clientCpuUsPerOp: 500,
    redisCpuUsPerOp: 10,
  };
}

test("throughput targets: judged on the service's own CPU per call, not on throughput the load generator's CPU dilutes", () => {
  // The machine-wide throughput ratio passes (0.85, 0.70), the service's own cost ratio does not (120/200 = 0.6, 120/300 = 0.4).
  const service: Record<OpKey, PhaseResult> = {
    create: phase("CreateSession", 1400, 300),
    get: phase("GetSession", 1700, 200),
    extend: phase("ExtendSession", 1700, 200),
    close: phase("CloseSession", 1700, 200),
  };
  const variant: VariantResult = { label: "B", flags: [], check: phase("Health/Check", 2000, 120), service, peakRss: 0 };
  const result: Throughput = { variants: [variant], production: 0, direct: service };
  const rows = throughputPart.targetRows(result);
  assert.deepEqual(
    rows.map((r) => [r.value, r.ok]),
    [
      ["60 %", false],
      ["40 %", false],
    ],
  );
  assert.match(rows[0]?.measure ?? "", /Throughput ratio on this machine.*85 %/);
});
