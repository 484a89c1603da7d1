/**
 * ArrivalWatcher (server/request-arrival.ts): one timer judges every request
 * body a server is reading (the fast gRPC unary path, connect's requests). A
 * request that stalls is cut once with its reason (the whole-request timeout,
 * or a body slower than the minimum rate); one that arrived or was stopped
 * leaves the watcher and is never cut; the watcher holds nothing once its
 * requests are gone.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { ArrivalWatcher, type Arrival, type SlowReason } from "../src/server/request-arrival.js";

/** A request whose arrival the test steers. */
function request(): Arrival & { arrived: boolean; received: number } {
  return {
    arrived: false,
    received: 0,
    complete() {
      return this.arrived;
    },
    bytes() {
      return this.received;
    },
    held: () => false,
  };
}

/** Watches `arrival`, keeping the reasons it is cut for. */
function watchInto(watcher: ArrivalWatcher, arrival: Arrival): SlowReason[] {
  const reasons: SlowReason[] = [];
  watcher.watch(arrival, (reason) => reasons.push(reason));
  return reasons;
}

/** Waits (without a bound on a busy machine's delays) until `done`; the watcher's own timer does not keep the process alive. */
async function until(done: () => boolean): Promise<void> {
  while (!done()) await sleep(20);
}

describe("ArrivalWatcher", () => {
  test("a request that stalls is cut once for the request timeout, and leaves the watcher", async () => {
    const watcher = new ArrivalWatcher({ requestTimeoutMs: 200, minBodyRate: 0 });
    const stalled = request();
    const reasons = watchInto(watcher, stalled);
    assert.equal(watcher.size, 1);
    await until(() => reasons.length > 0);
    assert.equal(reasons[0], "request_timeout");
    assert.equal(watcher.size, 0);
    await sleep(300);
    assert.deepEqual(reasons, ["request_timeout"], "cut once");
  });

  test("a body below the minimum rate is cut as slow_body before the request timeout", async () => {
    const watcher = new ArrivalWatcher({ requestTimeoutMs: 60_000, minBodyRate: 1024 });
    const trickle = request();
    const reasons = watchInto(watcher, trickle);
    const drip = setInterval(() => (trickle.received += 10), 100);
    try {
      await until(() => reasons.length > 0);
    } finally {
      clearInterval(drip);
    }
    assert.deepEqual(reasons, ["slow_body"]);
    assert.equal(watcher.size, 0);
  });

  test("a request that arrives, or is stopped, is dropped and never cut", async () => {
    const watcher = new ArrivalWatcher({ requestTimeoutMs: 200, minBodyRate: 1024 });
    const arriving = request();
    const stopped = request();
    const first = watchInto(watcher, arriving);
    const reasons: SlowReason[] = [];
    watcher.watch(stopped, (reason) => reasons.push(reason)).stop();
    assert.equal(watcher.size, 1, "stop() drops it at once");
    arriving.arrived = true;
    await until(() => watcher.size === 0);
    await sleep(500);
    assert.deepEqual(first, []);
    assert.deepEqual(reasons, []);
  });

  test("many requests share the watcher: only the stalled ones are cut", async () => {
    const watcher = new ArrivalWatcher({ requestTimeoutMs: 200, minBodyRate: 0 });
    const requests = Array.from({ length: 50 }, () => request());
    const watched = requests.map((r) => watchInto(watcher, r));
    for (const [i, r] of requests.entries()) if (i % 2 === 0) r.arrived = true;
    await until(() => watcher.size === 0);
    for (const [i, reasons] of watched.entries()) assert.deepEqual(reasons, i % 2 === 1 ? ["request_timeout"] : []);
  });
});
