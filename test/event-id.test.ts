/**
 * Event ids order as (ms, seq) numbers, never as strings: the watch's dedupe
 * and resume depend on it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { compareEventIds, maxEventId, parseCursor } from "../src/store/event-id.js";

describe("event ids", () => {
  it("compare by milliseconds, then by sequence, as numbers", () => {
    assert.ok(compareEventIds("9-0", "10-0") < 0, "9-0 before 10-0 (a string compare says otherwise)");
    assert.ok(compareEventIds("10-2", "10-10") < 0);
    assert.ok(compareEventIds("11-0", "10-99") > 0);
    assert.equal(compareEventIds("1700000000000-3", "1700000000000-3"), 0);
    assert.equal(maxEventId("1700000000000-9", "1700000000001-0"), "1700000000001-0");
    const sorted = ["10-0", "9-1", "9-0", "100-0", "10-11", "10-2"].sort(compareEventIds);
    assert.deepEqual(sorted, ["9-0", "9-1", "10-0", "10-2", "10-11", "100-0"]);
  });

  it("refuse what is not an id", () => {
    for (const bad of ["", "-", "12", "12-", "-3", "a-1", "1-b", "12345678901234567-0"]) {
      assert.throws(() => compareEventIds(bad, "1-0"), /not an event id/, bad);
      assert.throws(() => parseCursor(bad), /resume_cursor/, bad);
    }
  });
});
