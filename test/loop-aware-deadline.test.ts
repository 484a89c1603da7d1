/**
 * The loop-aware deadlines (src/observability/loop-aware-deadline.ts) share
 * one timer: each still expires on its own schedule, a cancelled one never
 * fires, and when none is left no timer keeps the process alive.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loopAwareDeadline, pendingDeadlines, withinDeadline } from "../src/observability/loop-aware-deadline.js";

const timeouts = (): number => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;

function expiry(timeoutMs: number): { readonly fired: Promise<void>; cancel(): void } {
  let cancel = (): void => {};
  const fired = new Promise<void>((resolve) => {
    const deadline = loopAwareDeadline(timeoutMs, resolve);
    cancel = () => deadline.cancel();
  });
  return { fired, cancel };
}

test("a short deadline started after a long one fires on its own time, not the long one's", async () => {
  const long = loopAwareDeadline(600_000, () => assert.fail("the long deadline must not fire"));
  const short = expiry(50);
  // Event-driven: only the short deadline's own look can resolve this within the test's timeout.
  await short.fired;
  assert.equal(pendingDeadlines(), 1);
  long.cancel();
  assert.equal(pendingDeadlines(), 0);
});

test("cancelled deadlines never fire, among many sharing the timer, and the last one leaves no timer behind", async () => {
  const before = timeouts();
  let fired = 0;
  const deadlines = Array.from({ length: 500 }, (_, i) => loopAwareDeadline(20 + (i % 7), () => fired++));
  const kept = expiry(40);
  for (const deadline of deadlines) deadline.cancel();
  await kept.fired;
  assert.equal(fired, 0);
  assert.equal(pendingDeadlines(), 0);
  assert.equal(timeouts(), before);
  // Cancelling twice, or after expiry, changes nothing.
  kept.cancel();
  deadlines[0]?.cancel();
  assert.equal(pendingDeadlines(), 0);
});

test("deadlines of different lengths each expire, in order", async () => {
  const order: number[] = [];
  await Promise.all(
    [120, 30, 80].map(
      (ms) =>
        new Promise<void>((resolve) => {
          loopAwareDeadline(ms, () => {
            order.push(ms);
            resolve();
          });
        }),
    ),
  );
  assert.deepEqual(order, [30, 80, 120]);
  assert.equal(pendingDeadlines(), 0);
});

test("withinDeadline: the value, the work's own failure, or the deadline's error", async () => {
  assert.equal(await withinDeadline(Promise.resolve(7), 1000, () => new Error("late")), 7);
  await assert.rejects(withinDeadline(Promise.reject(new Error("own")), 1000, () => new Error("late")), /own/);
  let settle: (value: number) => void = () => {};
  const never = new Promise<number>((resolve) => {
    settle = resolve;
  });
  await assert.rejects(withinDeadline(never, 30, () => new Error("late")), /late/);
  // The work settling after its deadline is ignored, and a failure then is no unhandled rejection.
  settle(1);
  const failsLate = new Promise<number>((_, reject) => setTimeout(() => reject(new Error("after")), 60));
  await assert.rejects(withinDeadline(failsLate, 10, () => new Error("late")), /late/);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(pendingDeadlines(), 0);
});
