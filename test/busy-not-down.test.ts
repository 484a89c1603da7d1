/**
 * Busy is not down: every deadline that judges a peer counts the time the
 * service could have read the peer's answer, not the time its own event loop
 * was busy (src/observability/loop-aware-deadline.ts): a store call
 * (REDIS_COMMAND_TIMEOUT), a blocking read on the event reader's connection,
 * the health monitor's ping, and a request body on the fast gRPC path
 * (REQUEST_TIMEOUT). A Redis that does not answer still fails the call, at
 * the deadline. Each test keeps the loop busy for several timeouts while the
 * answer sits in the socket: a wall-clock timer fails it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetSessionRequestSchema } from "../gen/session/v1/session_pb.js";
import type { App } from "../src/app.js";
import { SessionError } from "../src/domain/errors.js";
import { HealthMonitor } from "../src/health/health-monitor.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { loopAwareDeadline } from "../src/observability/loop-aware-deadline.js";
import { useRedisServer } from "./support/redis-server.js";
import { grpcFrame } from "./support/attack.js";
import { startTestApp } from "./support/server.js";
import { waitClock, waitedSince } from "../src/observability/loop-idle.js";

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

  it("the wait clock counts time spent waiting for I/O, not time spent working", async () => {
    const working = waitClock();
    busy(300);
    assert.ok(waitedSince(working) < 100, `busy: ${waitedSince(working)} ms counted`);
    const waiting = waitClock();
    await sleep(300);
    // Less a reading's age and the wake-up's wait for a CPU on a loaded machine.
    assert.ok(waitedSince(waiting) >= 100, `waiting: ${waitedSince(waiting)} ms counted`);
  });

  it("cancel() stops it", async () => {
    let expired = false;
    loopAwareDeadline(10, () => (expired = true)).cancel();
    await sleep(50);
    assert.equal(expired, false);
  });
});

describe("loop-aware deadlines beyond the store's command connection", () => {
  const redis = useRedisServer();
  const limits = { expiryGraceMs: 60_000, archiveRetentionMs: 60_000, maxDataKeys: 10, maxDataBytes: 1 << 20, maxSessionsPerUser: 0, sessionsPerUserPolicy: "reject" } as const;

  it("the health monitor's ping answered while the loop was busy keeps the status SERVING", async () => {
    const store = new RedisStore({ url: redis.url, keyPrefix: "busy-health:", commandTimeoutMs: TIMEOUT_MS, limits });
    const monitor = new HealthMonitor({ store, intervalMs: 3_600_000, timeoutMs: TIMEOUT_MS });
    try {
      await monitor.start();
      assert.equal(monitor.notServingReason(), undefined);
      for (let i = 0; i < 3; i++) {
        const checked = monitor.check();
        for (let turn = 0; turn < 10; turn++) await null;
        busy(TIMEOUT_MS * 4);
        await checked;
        assert.equal(monitor.notServingReason(), undefined, "still SERVING");
      }
    } finally {
      monitor.stop();
      await store.dispose();
    }
  });

  it("a blocking read on the event reader's own connection, answered while the loop was busy, is read", { timeout: 60_000 }, async () => {
    // Short enough that the connection's whole bound (timeout + the BLOCK) passes while the loop is busy.
    const timeoutMs = 100;
    const store = new RedisStore({ url: redis.url, keyPrefix: "busy-tail:", commandTimeoutMs: timeoutMs, limits });
    const tail = store.openEventTail();
    try {
      const position = await store.lastEventId();
      // Connected, and the log's generation read: the next read is one XREAD.
      assert.deepEqual(await tail.read(position, 10, 1), []);
      const read = tail.read(position, 10, 1);
      for (let turn = 0; turn < 10; turn++) await null;
      // Past timeout + BLOCK several times over (a bound that once included a fixed 5 s slack for BLOCK).
      busy(5500);
      assert.deepEqual(await read, []);
    } finally {
      tail.close();
      await store.dispose();
    }
  });

  it("a request body that reached the fast gRPC path while the loop was busy is read, not cut by REQUEST_TIMEOUT", { timeout: 60_000 }, async () => {
    const requestTimeoutMs = 500;
    const app: App = await startTestApp({ env: { REQUEST_TIMEOUT: `${requestTimeoutMs}ms`, HEADERS_TIMEOUT: `${requestTimeoutMs}ms` } });
    const session = http2.connect(app.url);
    session.on("error", () => {});
    try {
      for (let i = 0; i < 3; i++) {
        const stream = session.request({ ":method": "POST", ":path": "/session.v1.SessionService/GetSession", "content-type": "application/grpc", te: "trailers" });
        stream.on("error", () => {});
        stream.on("data", () => {});
        let status: string | undefined;
        stream.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
        stream.on("trailers", (h) => (status ??= h["grpc-status"] as string | undefined));
        const closed = new Promise<void>((resolve) => stream.once("close", resolve));
        // The headers arrive and the server starts waiting for the body.
        await sleep(50);
        stream.end(grpcFrame(toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId: "no-such-session" }))));
        // The body is on its way (or in the server's socket); the server reads it only after this.
        busy(requestTimeoutMs * 3);
        await closed;
        assert.equal(stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, "not reset");
        // Answered with a status of the call (the id is refused): the body was read and the call ran.
        assert.ok(status !== undefined && status !== "0", `answered (grpc-status ${status})`);
      }
    } finally {
      session.destroy();
      await app.close();
    }
  });
});
