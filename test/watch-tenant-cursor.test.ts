/**
 * Watch cursors shown to one tenant say nothing about another tenant's
 * writes: heartbeats, the heartbeat that ends a snapshot and the cursor of a
 * fresh watch move only with the tenant's own events, on both stores, through
 * the real app and the generated client. A cursor shown this way still
 * resumes without a gap.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import type { App } from "../src/app.js";
import { EventType, type SessionClient, type SessionEvent } from "@sessiond/client";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp, waitForWatchers } from "./support/server.js";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";

const redis = useRedisServer();

const A: TestKey = { id: "a", key: `k-${randomUUID()}`, tenant: "tenant-a", scopes: ["read", "write", "watch"] };
const B: TestKey = { id: "b", key: `k-${randomUUID()}`, tenant: "tenant-b", scopes: ["read", "write", "watch"] };

/** Collects events (heartbeats included) of one watch until stop(). */
function collect(client: SessionClient, request: Parameters<SessionClient["watchSessions"]>[0]) {
  const controller = new AbortController();
  const events: SessionEvent[] = [];
  const done = (async () => {
    try {
      for await (const res of client.watchSessions(request, { signal: controller.signal, timeoutMs: 60_000 })) {
        if (res.event !== undefined) events.push(res.event);
      }
    } catch {
      // stopped
    }
  })();
  return {
    events,
    heartbeats: () => events.filter((e) => e.type === EventType.HEARTBEAT),
    stop: async () => {
      controller.abort();
      await done;
    },
  };
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const backend of ["memory", "redis"] as const) {
  describe(`heartbeat cursors are per tenant (${backend})`, () => {
    let app: App;
    let a: SessionClient;
    let b: SessionClient;
    before(async () => {
      const dir = tempDir();
      app = await startTestApp({
        ...(backend === "redis" ? { redisUrl: redis.url } : {}),
        env: { API_KEYS_FILE: writeApiKeysFile(dir, [A, B]), WATCH_HEARTBEAT: "100ms", KEY_PREFIX: `hb${randomUUID().slice(0, 8)}:` },
      });
      a = clientWith(app.url, `Bearer ${A.key}`);
      b = clientWith(app.url, `Bearer ${B.key}`);
    });
    after(() => app.close());

    test("another tenant's writes never move a tenant's cursors; the shown cursor resumes without a gap", async () => {
      const own = (await a.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
      const before = app.events.subscriberCount;
      const fresh = collect(a, {});
      await waitForWatchers(app, before + 1);
      // The fresh watch shows A's own position...
      const created = collect(a, { sessionIds: [own], eventTypes: [] });
      await waitForWatchers(app, before + 2);
      await until(() => fresh.heartbeats().length >= 2);
      const ownCursor = fresh.heartbeats().at(-1)?.cursor ?? "";
      assert.notEqual(ownCursor, "");
      // ...and keeps showing it while B writes.
      for (let i = 0; i < 30; i++) await b.createSession({ userId: "other", dataSource: "other" });
      const seen = fresh.heartbeats().length;
      await until(() => fresh.heartbeats().length >= seen + 3);
      assert.deepEqual(new Set(fresh.heartbeats().map((e) => e.cursor)), new Set([ownCursor]), "heartbeats of A never moved with B's writes");

      // A snapshot started after B's writes ends with A's position, not the log's.
      const snap = collect(a, { sendInitialSnapshot: true });
      await until(() => snap.heartbeats().length >= 1);
      assert.equal(snap.heartbeats()[0]?.cursor, ownCursor);
      await snap.stop();

      // A's own write moves A's cursor; resuming from the shown cursor replays exactly that write.
      await a.updateSession({ sessionId: own, metadata: { n: 1 } });
      await until(() => fresh.events.some((e) => e.type === EventType.UPDATED));
      const updated = fresh.events.find((e) => e.type === EventType.UPDATED);
      const resumed = collect(a, { resumeCursor: ownCursor });
      await until(() => resumed.events.some((e) => e.type === EventType.UPDATED));
      assert.deepEqual(
        resumed.events.filter((e) => e.type !== EventType.HEARTBEAT).map((e) => [e.type, e.cursor]),
        [[EventType.UPDATED, updated?.cursor]],
        "only A's own event after the shown cursor, none of B's",
      );
      for (const w of [fresh, created, resumed]) await w.stop();
    });
  });
}
