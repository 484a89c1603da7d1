/**
 * The cached due-queue heads of a partitioned Redis layout (due-heads.ts),
 * with explicit clocks: an expire time another process announced (lower)
 * counts at once, without a read, and never raises a head.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DUE_HEAD_REFRESH_MS, DueHeads } from "../src/store/redis/due-heads.js";

describe("DueHeads", () => {
  it("an announced earlier expire time lowers a fresh head: it is the earliest, and due once the store's clock passes it", () => {
    const heads = new DueHeads(3);
    // Read at local time 1000, store clock 50_000: partition 0 empty, 1 due at 60_000, 2 at 70_000.
    heads.set(0, undefined, 50_000, 1000);
    heads.set(1, 60_000, 50_000, 1000);
    heads.set(2, 70_000, 50_000, 1000);
    assert.deepEqual(heads.stale(1010), []);
    heads.lower(0, 50_030);
    assert.deepEqual(heads.earliest(1010), { dueAt: 50_030, now: 50_010 });
    assert.deepEqual(heads.stale(1010), [], "no read needed for it");
    assert.deepEqual(heads.due(1020), []);
    assert.deepEqual(heads.due(1030), [0]);
    assert.deepEqual(heads.stale(1030), [], "a head due by now is not read first: expiring in its partition is the read");
  });

  it("a later announced time leaves the head as it is", () => {
    const heads = new DueHeads(2);
    heads.set(0, 60_000, 50_000, 1000);
    heads.set(1, undefined, 50_000, 1000);
    heads.lower(0, 65_000);
    assert.deepEqual(heads.earliest(1000), { dueAt: 60_000, now: 50_000 });
  });

  it("a head never read stays unknown (read at the next look); an old one is read again whatever was announced", () => {
    const heads = new DueHeads(2);
    heads.lower(1, 10);
    assert.deepEqual(heads.stale(0), [0, 1]);
    assert.deepEqual(heads.due(0), [0, 1], "unknown heads may have something due");
    heads.set(0, undefined, 50_000, 1000);
    heads.set(1, undefined, 50_000, 1000);
    heads.lower(1, 55_000);
    assert.deepEqual(heads.stale(1000 + DUE_HEAD_REFRESH_MS), [0, 1]);
  });
});
