import { test } from "node:test";
import assert from "node:assert/strict";
import { ROUNDS } from "../bench/settings.js";
import { roundOrder, SERVICE_OPERATIONS } from "../bench/parts/throughput.js";

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
