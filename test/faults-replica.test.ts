/**
 * A replica killed with SIGKILL while watchers and unary callers use it (issue
 * 12), with real service processes on one private redis-server:
 * - both watch helpers (`watchSessions` over `createSessionClient`, and over
 *   `createWatchReader`) resume from their cursor once a replica answers on
 *   the address again, and see every CREATED event exactly once (missed = 0,
 *   duplicates = 0) although the writes went on through another replica;
 * - unary calls in flight on the killed replica never come back ABORTED (this
 *   API's "version mismatch") or CANCELED: UNKNOWN when the outcome is
 *   unknown, UNAVAILABLE when the call never left;
 * - a CreateSession through the client helper always carries a request_id.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Code,
  ConnectError,
  createSessionClient,
  createWatchReader,
  EventType,
  watchSessions,
  type Interceptor,
  type WatchSessionsCaller,
} from "@sessiond/client";
import { createSessionGrpcClient } from "@sessiond/client/grpc-js";
import { startSessiond, type SessiondProcess } from "./support/process.js";
import { freePort, startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { TEST_ENCRYPTION_KEYS } from "./support/server.js";

const SESSIONS = 120;

function env(redisUrl: string, port: number): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
    ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
    AUDIT_LOG: "off",
    LOG_LEVEL: "info",
    PORT: String(port),
    WATCH_HEARTBEAT: "250ms",
  };
}

/** Session ids of every CREATED event a resuming watch hands out, in order, until stopped. */
function follow(caller: WatchSessionsCaller, signal: AbortSignal): { created: string[]; reconnects: ConnectError[]; ended: Promise<unknown> } {
  const created: string[] = [];
  const reconnects: ConnectError[] = [];
  const ended = (async () => {
    try {
      for await (const event of watchSessions(caller, { userId: "replica" }, { signal, initialBackoffMs: 20, maxBackoffMs: 250, onReconnect: (e) => void reconnects.push(e) })) {
        if (event.type === EventType.CREATED) created.push(event.session?.sessionId ?? "");
      }
      return undefined;
    } catch (error) {
      return error;
    }
  })();
  return { created, reconnects, ended };
}

describe("a replica killed with SIGKILL", () => {
  let redis: RedisServerHandle;
  let portA = 0;
  let a: SessiondProcess | undefined;
  let b: SessiondProcess | undefined;
  before(async () => {
    redis = await startRedisServer();
    portA = await freePort();
    a = await startSessiond({ env: env(redis.url, portA) });
    b = await startSessiond({ env: env(redis.url, 0) });
  });
  after(async () => {
    a?.kill();
    b?.kill();
    await Promise.all([a?.exited, b?.exited]);
    await redis?.stop();
  });

  it("watch helpers resume on the address and miss nothing; unary calls in flight are never ABORTED or CANCELED", async () => {
    const urlA = `http://127.0.0.1:${portA}`;
    const clientA = createSessionClient(urlA, { timeoutMs: 5000 });
    const writer = createSessionClient(b?.url ?? "", { timeoutMs: 5000 });
    const reader = createWatchReader(urlA);
    const abort = new AbortController();
    const viaClient = follow(clientA, abort.signal);
    const viaReader = follow(reader, abort.signal);
    // Both watches are registered once a first event reaches them.
    const probe = (await writer.createSession({ userId: "replica", dataSource: "faults" })).session?.sessionId ?? "";
    const deadline = Date.now() + 15_000;
    while (!viaClient.created.includes(probe) || !viaReader.created.includes(probe)) {
      if (Date.now() > deadline) throw new Error("the watches did not start");
      await sleep(20);
    }

    const written: string[] = [probe];
    const unaryCodes: Code[] = [];
    let writing = true;
    const writes = (async () => {
      try {
        for (let i = 0; i < SESSIONS; i += 1) {
          written.push((await writer.createSession({ userId: "replica", dataSource: "faults" })).session?.sessionId ?? "");
          if (i % 10 === 0) await sleep(5);
        }
      } finally {
        writing = false;
      }
    })();
    // Unary calls on A while it dies: many in flight at once (bounded, whatever happens to the writes).
    const callsUntil = Date.now() + 30_000;
    const calls = (async () => {
      while (writing && Date.now() < callsUntil) {
        const batch = Array.from({ length: 8 }, () =>
          clientA.getSession({ sessionId: probe }).then(
            () => undefined,
            (e: unknown) => ConnectError.from(e).code,
          ),
        );
        for (const code of await Promise.all(batch)) if (code !== undefined) unaryCodes.push(code);
        await sleep(2);
      }
    })();

    await sleep(100);
    a?.child.kill("SIGKILL");
    await a?.exited;
    await sleep(300);
    a = await startSessiond({ env: env(redis.url, portA) });
    await Promise.all([writes, calls]);

    const all = new Set(written);
    const waitUntil = Date.now() + 20_000;
    while (viaClient.created.length < written.length || viaReader.created.length < written.length) {
      if (Date.now() > waitUntil) break;
      await sleep(50);
    }
    abort.abort();
    assert.equal(await viaClient.ended, undefined, "the createSessionClient watch never gave up");
    assert.equal(await viaReader.ended, undefined, "the createWatchReader watch never gave up");
    reader.close();
    for (const [name, watch] of [["createSessionClient", viaClient], ["createWatchReader", viaReader]] as const) {
      const missed = written.filter((id) => !watch.created.includes(id)).length;
      const duplicates = watch.created.length - new Set(watch.created).size;
      assert.equal(missed, 0, `${name}: missed CREATED events`);
      assert.equal(duplicates, 0, `${name}: duplicate CREATED events`);
      assert.deepEqual(watch.created.filter((id) => all.has(id)), written, `${name}: in write order`);
      assert.ok(watch.reconnects.length > 0, `${name}: it did have to reconnect`);
    }
    const counts = new Map<string, number>();
    for (const code of unaryCodes) counts.set(Code[code], (counts.get(Code[code]) ?? 0) + 1);
    const summary = JSON.stringify(Object.fromEntries(counts));
    assert.ok(unaryCodes.length > 0, "some unary calls were cut by the kill");
    assert.equal(unaryCodes.filter((c) => c === Code.Aborted || c === Code.Canceled).length, 0, `transport failures are never ABORTED or CANCELED: ${summary}`);
    assert.ok(unaryCodes.every((c) => c === Code.Unknown || c === Code.Unavailable || c === Code.DeadlineExceeded), summary);
  });

  it("every CreateSession from the client helper carries a request_id (the caller's own is kept)", async () => {
    const seen: string[] = [];
    const spy: Interceptor = (next) => async (req) => {
      if (!req.stream && req.method.name === "CreateSession") seen.push(String((req.message as { requestId?: string }).requestId));
      return next(req);
    };
    const client = createSessionClient(b?.url ?? "", { interceptors: [spy] });
    const first = await client.createSession({ userId: "rid", dataSource: "faults" });
    await client.createSession({ userId: "rid", dataSource: "faults", requestId: "mine-1" });
    const again = await client.createSession({ userId: "rid", dataSource: "faults", requestId: "mine-1" });
    assert.equal(seen.length, 3);
    assert.match(seen[0] ?? "", /^[0-9a-f-]{36}$/, "a generated request id");
    assert.equal(seen[1], "mine-1");
    assert.equal(again.created, false, "the same request id returns the session it created");
    assert.ok(first.created);
  });

  it("the grpc-js client gives every CreateSession a request_id too", async () => {
    const grpcClient = createSessionGrpcClient(new URL(b?.url ?? "").host);
    try {
      const made = await grpcClient.createSession({ userId: "rid-grpc", dataSource: "faults" });
      const raw = redis.client();
      try {
        const keys = await raw.keys("sd:default:r:*");
        const ids = await Promise.all(keys.map((k) => raw.get(k)));
        assert.ok(ids.includes(made.session?.sessionId ?? "-"), "a request-id key points at the new session");
      } finally {
        raw.disconnect();
      }
    } finally {
      grpcClient.close();
    }
  });
});
