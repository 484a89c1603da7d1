/**
 * RedisStore connected through Redis Sentinel (REDIS_SENTINELS), with
 * REDIS_WAIT_REPLICAS=1: the service's start on it (its checks run on the
 * primary the sentinels name), the whole store conformance suite and the guard
 * conformance suite on a primary, one replica and three sentinels started
 * from the redis-server binary (test/support/redis-sentinel.ts), so every RPC
 * works through Sentinel and with a WAIT after each acknowledged write. The
 * failover tests are in test/faults-sentinel.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { AccessLevel, createSessionClient } from "@sessiond/client";
import { ConfigError } from "../src/config/config.js";
import { isSessionError } from "../src/domain/errors.js";
import { StartError } from "../src/startup/start-error.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { NOT_REPLICATED_MESSAGE } from "../src/store/redis/replica-wait.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisSentinel, type SentinelSetup } from "./support/redis-sentinel.js";
import { freePort } from "./support/redis-server.js";
import { startTestApp, TEST_ENCRYPTION_KEYS } from "./support/server.js";

const PREFIX = "sdsentinel:";
const sentinel = useRedisSentinel({ replicas: 1 });
const started = (): SentinelSetup => sentinel.setup;

const openFlushed = async (): Promise<{ store: RedisStore; cleanup: () => Promise<void> }> => {
  const primary = started().nodes[0]?.client();
  await primary?.flushall();
  primary?.disconnect();
  const store = new RedisStore({
    sentinel: started().target,
    keyPrefix: PREFIX,
    limits: CONFORMANCE_LIMITS,
    commandTimeoutMs: 5000,
    replicaWait: { replicas: 1, timeoutMs: 2000 },
  });
  return { store, cleanup: () => store.dispose() };
};

describe("RedisStore through Sentinel", () => {
  it("reaches the primary the sentinels name and confirms writes on its replica", async () => {
    const { store, cleanup } = await openFlushed();
    try {
      const { session } = await store.create({ tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      // WAIT 1 returned: the replica holds the session now, not eventually.
      const replica = started().nodes[1]?.client();
      try {
        assert.equal(await replica?.exists(`${PREFIX}t:{${session.sessionId}}`), 1);
      } finally {
        replica?.disconnect();
      }
      const problems = await store.problems();
      assert.deepEqual(problems.problems, [], "INFO memory of the primary: noeviction, not full");
    } finally {
      await cleanup();
    }
  });

  it("writes that finish together share one WAIT", async () => {
    const { store, cleanup } = await openFlushed();
    const primary = started().nodes[0]?.client();
    assert.ok(primary !== undefined);
    try {
      const { session } = await store.create({ tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      await primary.config("RESETSTAT");
      const writes = 32;
      await Promise.all(Array.from({ length: writes }, (_, i) => store.setData("t", session.sessionId, `k${i % 4}`, `"${i}"`)));
      const stats = await primary.info("commandstats");
      const waits = Number(/^cmdstat_wait:calls=(\d+)/m.exec(stats)?.[1] ?? 0);
      assert.ok(waits >= 1 && waits < writes, `${waits} WAITs for ${writes} writes`);
    } finally {
      primary.disconnect();
      await cleanup();
    }
  });

  it("fails a write the replica did not confirm in time with UNAVAILABLE, although the primary applied it", async () => {
    const { store, cleanup } = await openFlushed();
    const replica = started().nodes[1]?.client();
    const primary = started().nodes[0]?.client();
    assert.ok(replica !== undefined && primary !== undefined);
    try {
      const { session } = await store.create({ tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      // The replica receives the stream but applies nothing: it cannot confirm.
      await replica.call("CLIENT", "PAUSE", "30000", "WRITE");
      try {
        await assert.rejects(store.setData("t", session.sessionId, "k", '"v"'), (error: unknown) => {
          assert.ok(isSessionError(error) && error.kind === "unavailable", String(error));
          assert.equal(error.message, NOT_REPLICATED_MESSAGE);
          return true;
        });
      } finally {
        await replica.call("CLIENT", "UNPAUSE");
      }
      assert.equal(await primary.hget(`${PREFIX}t:{${session.sessionId}}:d`, "k"), '"v"', "applied on the primary");
      // Confirmed once the replica applies again: the next write succeeds.
      assert.equal((await store.setData("t", session.sessionId, "k2", '"w"')).version > 0, true);
    } finally {
      replica.disconnect();
      primary.disconnect();
      await cleanup();
    }
  });

  it("confirms a create replayed by its request id after a reconnect only once the replica has the first attempt", async () => {
    const { store, cleanup } = await openFlushed();
    const replica = started().nodes[1]?.client();
    const primary = started().nodes[0]?.client();
    assert.ok(replica !== undefined && primary !== undefined);
    const input = { tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "replayed" } as const;
    const notReplicated = (error: unknown): boolean => {
      assert.ok(isSessionError(error) && error.kind === "unavailable" && error.message === NOT_REPLICATED_MESSAGE, String(error));
      return true;
    };
    try {
      await replica.call("CLIENT", "PAUSE", "30000", "WRITE");
      try {
        await assert.rejects(store.create(input), notReplicated);
        // A new connection has written nothing: a WAIT on it alone would be met at once.
        await primary.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        for (let attempt = 0; ; attempt++) {
          await sleep(50);
          try {
            await store.ping();
            break;
          } catch (error) {
            if (attempt > 200) throw error;
          }
        }
        await assert.rejects(store.create(input), notReplicated);
      } finally {
        await replica.call("CLIENT", "UNPAUSE");
      }
      const replayed = await store.create(input);
      assert.equal(replayed.created, false);
    } finally {
      replica.disconnect();
      primary.disconnect();
      await cleanup();
    }
  });
});

describe("the service through Sentinel (REDIS_SENTINELS)", () => {
  const env = (): Record<string, string> => ({
    REDIS_SENTINELS: started().target.sentinels.map((s) => `${s.host}:${s.port}`).join(","),
    REDIS_SENTINEL_MASTER: started().target.masterName,
    REDIS_WAIT_REPLICAS: "1",
    REDIS_WAIT_TIMEOUT: "1s",
    REDIS_COMMAND_TIMEOUT: "5s",
    ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
  });

  it("starts on the primary the sentinels name and serves calls", async () => {
    const app = await startTestApp({ env: env() });
    try {
      const client = createSessionClient(app.url, { timeoutMs: 10_000 });
      const created = await client.createSession({ userId: "through-sentinel", dataSource: "d", accessLevel: AccessLevel.WRITE });
      const id = created.session?.sessionId ?? "";
      assert.equal((await client.getSession({ sessionId: id })).session?.userId, "through-sentinel");
    } finally {
      await app.close();
    }
  });

  it("checks the eviction policy of that primary at start", async () => {
    const primary = started().nodes[0]?.client();
    assert.ok(primary !== undefined);
    try {
      await primary.config("SET", "maxmemory-policy", "allkeys-lru");
      await assert.rejects(startTestApp({ env: env() }), (error: unknown) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /maxmemory-policy is allkeys-lru/);
        return true;
      });
    } finally {
      await primary.config("SET", "maxmemory-policy", "noeviction");
      primary.disconnect();
    }
  });

  it("refuses to start when no sentinel answers, naming the master and the sentinels, never a password", async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "sessiond-sentinel-secret-"));
    try {
      writeFileSync(join(dir, "password"), "do-not-print-me");
      const start = startTestApp({ env: { ...env(), REDIS_SENTINELS: `127.0.0.1:${port}`, REDIS_PASSWORD_FILE: join(dir, "password"), REDIS_COMMAND_TIMEOUT: "1s", REDIS_WAIT_TIMEOUT: "500ms" } });
      await assert.rejects(start, (error: unknown) => {
        assert.ok(error instanceof StartError, String(error));
        assert.match(error.message, new RegExp(`Redis at primary "${started().target.masterName}" of sentinels 127\\.0\\.0\\.1:${port} \\(REDIS_SENTINELS\\) is unreachable: `));
        assert.doesNotMatch(error.message, /do-not-print-me/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

runStoreConformance("redis through sentinel, WAIT 1", openFlushed);
runGuardConformance("redis through sentinel, WAIT 1", openFlushed);
