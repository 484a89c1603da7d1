/**
 * Busy is not down: a Redis call's deadline (REDIS_COMMAND_TIMEOUT) counts the
 * time the service could have read the reply, not the time its own event loop
 * was busy (src/store/redis/loop-aware-deadline.ts). A Redis that does not
 * answer still fails the call, at the deadline.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError } from "../src/domain/errors.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { loopAwareDeadline } from "../src/observability/loop-aware-deadline.js";
import { useRedisServer } from "./support/redis-server.js";

const TIMEOUT_MS = 500;

/** Keeps the event loop busy (no I/O is read) for `ms`. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe("loop-aware Redis deadline", () => {
  const redis = useRedisServer();
  let store: RedisStore;
  before(() => {
    store = new RedisStore({
      url: redis.url,
      keyPrefix: "busy:",
      commandTimeoutMs: TIMEOUT_MS,
      limits: { expiryGraceMs: 60_000, archiveRetentionMs: 60_000, maxDataKeys: 10, maxDataBytes: 1 << 20, maxSessionsPerUser: 0, sessionsPerUserPolicy: "reject" },
    });
  });
  after(async () => {
    await store.dispose();
  });

  it("a reply that arrived while the event loop was busy for many timeouts is read, not reported as a timeout", async () => {
    await store.ping();
    for (let i = 0; i < 3; i++) {
      const answered = store.counters("t");
      // A few microtask turns (no I/O) let the call send its command and start its deadline.
      for (let turn = 0; turn < 10; turn++) await null;
      // The reply is in the socket within milliseconds; the loop reads it only after this.
      busy(TIMEOUT_MS * 4);
      const counters = await answered;
      assert.equal(counters.active, 0);
    }
  });

  it("a Redis that does not answer still fails the call (deadline exceeded), while the loop idles", async () => {
    const probe = redis.client();
    try {
      await store.ping();
      await probe.call("CLIENT", "PAUSE", "3000", "ALL");
      const started = performance.now();
      // Sent, never answered: the call may or may not have been applied (call-outcome.ts).
      await assert.rejects(store.counters("t"), (error: unknown) => error instanceof SessionError && error.kind === "deadline_exceeded");
      assert.ok(performance.now() - started < 2900, "before Redis answered again");
    } finally {
      await probe.call("CLIENT", "UNPAUSE").catch(() => {});
      probe.disconnect();
    }
  });

  it("a loop that never idles still gives up, within the wall-clock ceiling", async () => {
    let expired = false;
    const deadline = loopAwareDeadline(20, () => (expired = true));
    const started = performance.now();
    // Busy in slices, with a timer turn between them but no idle time.
    while (!expired && performance.now() - started < 5000) {
      busy(15);
      await new Promise((resolve) => setImmediate(resolve));
    }
    deadline.cancel();
    assert.equal(expired, true);
  });

  it("cancel() stops it", async () => {
    let expired = false;
    loopAwareDeadline(10, () => (expired = true)).cancel();
    await sleep(50);
    assert.equal(expired, false);
  });
});
