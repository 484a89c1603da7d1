/**
 * Every expiry produces exactly one system end (audit record and expiry lag),
 * from the process that performed it, whichever path expired it: the
 * scheduler's expireDue, or lazily any other call that met the session after
 * its expire_time (the Lua load_session path; MemoryStore's liveOrArchive).
 * Same test on both stores, real redis-server for Redis.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { loadConfig } from "../src/config/config.js";
import { isSessionError } from "../src/domain/errors.js";
import type { SessionRecord } from "../src/domain/model.js";
import { sessionCore } from "./support/session-core.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { SessionStore, StoreLimits } from "../src/store/store.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";

const LIMITS: StoreLimits = { maxDataKeys: 10, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };
const config = loadConfig({ SESSION_TTL_MIN: "10ms", SWEEP_INTERVAL: "20ms" });
const BASE = { userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60 } as const;

interface Ended {
  readonly reason: string;
  readonly record: SessionRecord;
  readonly at: number;
}

function suite(name: string, open: () => Promise<SessionStore>): void {
  describe(name, () => {
    it("a session expired lazily by another call is reported once, with when it was archived", async () => {
      const store = await open();
      const ended: Ended[] = [];
      // Not started: no scheduler, so only the calls below can expire anything.
      const { manager, background } = sessionCore({ store, config, logger: pino({ level: "silent" }), onSystemEnd: (reason, record, at) => ended.push({ reason, record, at }) });
      try {
        const viaGet = (await manager.create("t", BASE)).session.sessionId;
        const viaExtend = (await manager.create("t", BASE)).session.sessionId;
        const viaData = (await manager.create("t", BASE)).session.sessionId;
        await sleep(100);
        const kinds = async (call: Promise<unknown>): Promise<string> => {
          try {
            await call;
            return "ok";
          } catch (error) {
            return isSessionError(error) ? error.kind : "other";
          }
        };
        assert.equal(await kinds(manager.get("t", viaGet, false)), "not_found");
        assert.equal(await kinds(manager.extend("t", viaExtend, 1000)), "ended", "archived by this call, then refused");
        assert.equal(await kinds(manager.setData("t", viaData, "k", 1)), "not_found");
        // Met again: already archived, nothing more to report.
        assert.equal(await kinds(manager.get("t", viaGet, true)), "ok");
        assert.equal(await kinds(manager.extend("t", viaExtend, 1000)), "ended");
        assert.deepEqual((await store.expireDue(100)).length, 0, "nothing left for the scheduler");

        assert.deepEqual(ended.map((e) => [e.reason, e.record.sessionId]), [["expired", viaGet], ["expired", viaExtend], ["expired", viaData]]);
        for (const e of ended) {
          assert.equal(e.record.status, "expired");
          assert.equal(e.record.tenant, "t");
          assert.ok(e.at >= e.record.expireTime + 30, "archived when met, after expire_time (the lag)");
        }
      } finally {
        await background.stop();
        await store.dispose();
      }
    });

    it("the scheduler's expiries are reported once too, and a lazy path racing it never doubles one", async () => {
      const store = await open();
      const ended: Ended[] = [];
      const { manager, background } = sessionCore({ store, config, logger: pino({ level: "silent" }), onSystemEnd: (reason, record, at) => ended.push({ reason, record, at }) });
      try {
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) ids.push((await manager.create("t", { ...BASE, ttlMs: 50 })).session.sessionId);
        await background.start();
        // Race the scheduler with reads of the same sessions.
        const deadline = Date.now() + 3000;
        while (ended.length < ids.length && Date.now() < deadline) {
          await Promise.all(ids.map((id) => manager.lookup("t", id)));
          await sleep(5);
        }
        await sleep(100);
        assert.deepEqual(ended.map((e) => e.record.sessionId).sort(), [...ids].sort());
        assert.ok(ended.every((e) => e.reason === "expired" && e.at >= e.record.expireTime));
      } finally {
        await background.stop();
        await store.dispose();
      }
    });
  });
}

suite("MemoryStore", async () => new MemoryStore({ limits: LIMITS }));

let redis: RedisServerHandle;
before(async () => {
  redis = await startRedisServer(["--notify-keyspace-events", "Ex"]);
});
after(async () => {
  await redis?.stop();
});
suite("RedisStore", async () => {
  const raw = redis.client();
  await raw.flushall();
  raw.disconnect();
  return new RedisStore({ url: redis.url, keyPrefix: "ea:", limits: LIMITS, commandTimeoutMs: 2000 });
});
