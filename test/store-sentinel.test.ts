/**
 * RedisStore connected through Redis Sentinel (REDIS_SENTINELS), with
 * REDIS_WAIT_REPLICAS=1: the whole store conformance suite and the guard
 * conformance suite on a primary, one replica and three sentinels started
 * from the redis-server binary (test/support/redis-sentinel.ts), so every RPC
 * works through Sentinel and with a WAIT after each acknowledged write. The
 * failover tests are in test/faults-sentinel.test.ts.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { startRedisSentinel, type SentinelSetup } from "./support/redis-sentinel.js";

const PREFIX = "sdsentinel:";
let setup: SentinelSetup | undefined;

before(async () => {
  setup = await startRedisSentinel({ replicas: 1 });
  await setup.waitSettled();
});
after(async () => {
  await setup?.stop();
});

function started(): SentinelSetup {
  if (setup === undefined) throw new Error("the sentinel setup starts in before()");
  return setup;
}

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
});

runStoreConformance("redis through sentinel, WAIT 1", openFlushed);
runGuardConformance("redis through sentinel, WAIT 1", openFlushed);
