/**
 * Redis goes away and comes back while the service runs: RPCs fail fast with
 * UNAVAILABLE (not INTERNAL, not a hang), then succeed again on the same app.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { App } from "../src/app.js";
import { AccessLevel, Code, ConnectError, createSessionClient, type SessionClient } from "@sessiond/client";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";

const COMMAND_TIMEOUT_MS = 300;
/** "Not a hang": generous, so a slow CI machine does not fail it. */
const BOUND_MS = 5 * COMMAND_TIMEOUT_MS;

async function failsUnavailableWithinBound(name: string, call: () => Promise<unknown>): Promise<void> {
  const started = performance.now();
  await assert.rejects(call(), (error: unknown) => {
    assert.ok(error instanceof ConnectError, `${name}: expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, Code.Unavailable, `${name}: expected UNAVAILABLE, got ${Code[error.code]}: ${error.message}`);
    return true;
  });
  const elapsed = performance.now() - started;
  assert.ok(elapsed < BOUND_MS, `${name} answered after ${Math.round(elapsed)} ms, bound ${BOUND_MS} ms`);
}

describe("Redis unavailable", () => {
  let redis: RedisServerHandle;
  let app: App;
  let client: SessionClient;
  before(async () => {
    redis = await startRedisServer();
    app = await startTestApp({ redisUrl: redis.url, env: { REDIS_COMMAND_TIMEOUT: `${COMMAND_TIMEOUT_MS}ms` } });
    // A client deadline far beyond the bound: a hang would show as DEADLINE_EXCEEDED, not pass.
    client = createSessionClient(app.url, { timeoutMs: 30_000 });
  });
  after(async () => {
    await app?.close();
    await redis?.stop();
  });

  test("RPCs fail with UNAVAILABLE while Redis is down and succeed again once it is back", async () => {
    const created = await client.createSession({ userId: "frank", dataSource: "warehouse", accessLevel: AccessLevel.WRITE });
    const id = created.session?.sessionId ?? "";

    await redis.stop();
    await failsUnavailableWithinBound("GetSession", () => client.getSession({ sessionId: id }));
    await failsUnavailableWithinBound("CreateSession", () => client.createSession({ userId: "frank", dataSource: "warehouse" }));
    await failsUnavailableWithinBound("SetSessionData", () => client.setSessionData({ sessionId: id, key: "k", value: fromJson(ValueSchema, 1) }));
    await failsUnavailableWithinBound("ListSessions", () => client.listSessions({}));
    await failsUnavailableWithinBound("GetSessionMetrics", () => client.getSessionMetrics({}));
    // Several at once: each is bounded, none waits behind another.
    await Promise.all(
      Array.from({ length: 5 }, (_, i) => failsUnavailableWithinBound(`GetSession #${i}`, () => client.getSession({ sessionId: id }))),
    );

    await redis.start();
    // The store reconnects in the background; poll until it does (bounded).
    const deadline = Date.now() + 15_000;
    let recovered: Awaited<ReturnType<SessionClient["createSession"]>> | undefined;
    while (recovered === undefined) {
      try {
        recovered = await client.createSession({ userId: "frank", dataSource: "warehouse" });
      } catch (error) {
        assert.ok(error instanceof ConnectError && error.code === Code.Unavailable, `only UNAVAILABLE while reconnecting, got ${String(error)}`);
        if (Date.now() > deadline) throw new Error("the app did not recover after Redis came back");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const again = recovered.session?.sessionId ?? "";
    assert.equal((await client.getSession({ sessionId: again })).session?.userId, "frank");
    const metrics = await client.getSessionMetrics({});
    assert.equal(metrics.activeSessions, 1n, "a restarted redis-server keeps no data: only the new session");
    // The session created before the outage is gone with the old Redis: NOT_FOUND, not an error.
    await assert.rejects(client.getSession({ sessionId: id }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
  });
});
