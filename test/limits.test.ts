/**
 * Every configurable cap through the API, below, at and above its limit, with
 * nothing changed by a rejected request: request size, metadata size, data
 * keys and bytes per session, sessions per user (reject and close_oldest),
 * concurrent watchers per principal, page size. And deadlines: a call whose
 * deadline passes while Redis is paused gets DEADLINE_EXCEEDED, and the write
 * is all or nothing.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import type { App } from "../src/app.js";
import {
  AccessLevel,
  Code,
  ConnectError,
  createSessionClient,
  SessionStatus,
  SetSessionDataRequestSchema,
  type SessionClient,
} from "@sessiond/client";
import { KeyedFieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { SealedNames } from "../src/store/sealed-names.js";
import { startRedisServer, useRedisServer } from "./support/redis-server.js";
import { startTestApp, TEST_ENCRYPTION_KEYS } from "./support/server.js";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";

async function rejectsWith(promise: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
    return true;
  });
}

const str = (value: string) => ({ kind: { case: "stringValue" as const, value } });

async function withApp(env: Record<string, string>, fn: (client: SessionClient, app: App) => Promise<void>, redisUrl?: string): Promise<void> {
  const app = await startTestApp({ env, ...(redisUrl === undefined ? {} : { redisUrl }) });
  try {
    await fn(createSessionClient(app.url), app);
  } finally {
    await app.close();
  }
}

async function newSession(client: SessionClient, userId = "u"): Promise<string> {
  return (await client.createSession({ userId, dataSource: "d", accessLevel: AccessLevel.WRITE })).session?.sessionId ?? "";
}

describe("limits", () => {
  test("request size (MAX_REQUEST_BYTES): at the limit accepted, one byte over RESOURCE_EXHAUSTED, nothing written", () =>
    withApp({ MAX_REQUEST_BYTES: "2048" }, async (client) => {
      const sessionId = await newSession(client);
      const request = (pad: number) => create(SetSessionDataRequestSchema, { sessionId, key: "k", value: str("x".repeat(pad)) });
      const base = toBinary(SetSessionDataRequestSchema, request(0)).length;
      // Sizes grow by one byte per character here (the length prefix stays two bytes in this range).
      const atLimit = request(2048 - base - 1);
      const size = toBinary(SetSessionDataRequestSchema, atLimit).length;
      const pad = 2048 - base - 1 + (2048 - size);
      assert.equal(toBinary(SetSessionDataRequestSchema, request(pad)).length, 2048);
      await client.setSessionData(request(pad - 1));
      const { version } = await client.setSessionData(request(pad));
      await rejectsWith(client.setSessionData({ ...request(pad + 1), key: "k" }), Code.ResourceExhausted);
      assert.equal((await client.getSession({ sessionId })).session?.version, version, "nothing changed");
      assert.equal((await client.getSessionData({ sessionId, key: "k" })).value?.kind.value, "x".repeat(pad));
    }));

  test("metadata size (MAX_METADATA_BYTES): below and at accepted, above INVALID_ARGUMENT, nothing changed", () =>
    withApp({ MAX_METADATA_BYTES: "64" }, async (client) => {
      const meta = (n: number) => ({ a: "x".repeat(n) }); // JSON {"a":"…"} is n + 8 bytes
      const sessionId = (await client.createSession({ userId: "u", dataSource: "d", metadata: meta(55) })).session?.sessionId ?? "";
      const updated = await client.updateSession({ sessionId, metadata: meta(56) });
      await rejectsWith(client.updateSession({ sessionId, metadata: meta(57) }), Code.InvalidArgument);
      await rejectsWith(client.createSession({ userId: "u", dataSource: "d", metadata: meta(57) }), Code.InvalidArgument);
      const now = (await client.getSession({ sessionId })).session;
      assert.equal(now?.version, updated.session?.version);
      assert.deepEqual(now?.metadata, meta(56));
      assert.equal((await client.getSessionMetrics({})).totalSessions, 1n);
    }));

  test("data keys per session (MAX_DATA_KEYS): below and at accepted, above RESOURCE_EXHAUSTED, nothing changed", () =>
    withApp({ MAX_DATA_KEYS: "3" }, async (client) => {
      const sessionId = await newSession(client);
      await client.setSessionData({ sessionId, key: "a", value: str("1") });
      await client.setSessionData({ sessionId, key: "b", value: str("2") });
      const { version } = await client.setSessionData({ sessionId, key: "c", value: str("3") });
      await rejectsWith(client.setSessionData({ sessionId, key: "d", value: str("4") }), Code.ResourceExhausted);
      assert.equal((await client.getSession({ sessionId })).session?.version, version);
      assert.deepEqual((await client.listSessionData({ sessionId })).keys, ["a", "b", "c"]);
      await client.setSessionData({ sessionId, key: "a", value: str("overwrite is fine") });
    }));

  for (const backend of ["memory", "redis"] as const) {
    test(`data bytes per session (MAX_DATA_BYTES, as stored, encrypted), ${backend}: below and at accepted, above RESOURCE_EXHAUSTED`, async () => {
      const redis = backend === "redis" ? await startRedisServer() : undefined;
      try {
        // A stored value is "e2:<key id>:" + base64url(12-byte nonce + JSON + 16-byte tag), after its key name sealed
        // the same way and a space (the one-letter key names here).
        const keyId = backend === "redis" ? "test" : "ephemeral";
        const sealed = (bytes: number): number => `e2:${keyId}:`.length + Buffer.alloc(12 + bytes + 16).toString("base64url").length;
        const stored = (jsonBytes: number): number => sealed(1) + 1 + sealed(jsonBytes);
        const limit = stored(12) * 2; // two values of JSON length 12 ("x" * 10, quoted)
        await withApp(
          { MAX_DATA_BYTES: String(limit) },
          async (client) => {
            const sessionId = await newSession(client);
            await client.setSessionData({ sessionId, key: "a", value: str("x".repeat(10)) });
            const { version } = await client.setSessionData({ sessionId, key: "b", value: str("y".repeat(10)) });
            await rejectsWith(client.setSessionData({ sessionId, key: "c", value: str("") }), Code.ResourceExhausted);
            await rejectsWith(client.setSessionData({ sessionId, key: "a", value: str("x".repeat(11)) }), Code.ResourceExhausted);
            assert.equal((await client.getSession({ sessionId })).session?.version, version, "nothing changed");
            assert.deepEqual((await client.listSessionData({ sessionId })).keys, ["a", "b"]);
            await client.deleteSessionData({ sessionId, key: "b" });
            await client.setSessionData({ sessionId, key: "c", value: str("z".repeat(10)) });
          },
          redis?.url,
        );
      } finally {
        await redis?.stop();
      }
    });
  }

  test("sessions per user, reject: below and at accepted, above RESOURCE_EXHAUSTED, nothing created", () =>
    withApp({ MAX_SESSIONS_PER_USER: "2" }, async (client) => {
      await newSession(client, "alice");
      await newSession(client, "alice");
      await rejectsWith(client.createSession({ userId: "alice", dataSource: "d", requestId: "r" }), Code.ResourceExhausted);
      const metrics = await client.getSessionMetrics({});
      assert.equal(metrics.totalSessions, 2n);
      assert.equal((await client.listSessions({ userId: "alice" })).sessions.length, 2);
      await newSession(client, "bob");
    }));

  test("sessions per user, close_oldest: the oldest is closed to make room", () =>
    withApp({ MAX_SESSIONS_PER_USER: "2", SESSIONS_PER_USER_POLICY: "close_oldest" }, async (client) => {
      const first = await newSession(client, "alice");
      await sleep(5);
      const second = await newSession(client, "alice");
      await sleep(5);
      const third = await newSession(client, "alice");
      const live = (await client.listSessions({ userId: "alice" })).sessions.map((s) => s.sessionId).sort();
      assert.deepEqual(live, [second, third].sort());
      await rejectsWith(client.getSession({ sessionId: first }), Code.NotFound);
      assert.equal((await client.getSession({ sessionId: first, includeEnded: true })).session?.status, SessionStatus.CLOSED);
      const metrics = await client.getSessionMetrics({});
      assert.deepEqual([metrics.activeSessions, metrics.closedSessions], [2n, 1n]);
    }));

  test("page size (MAX_PAGE_SIZE): below and at accepted, above INVALID_ARGUMENT", () =>
    withApp({ MAX_PAGE_SIZE: "5", DEFAULT_PAGE_SIZE: "5" }, async (client) => {
      for (let i = 0; i < 7; i++) await newSession(client);
      assert.equal((await client.listSessions({ pageSize: 4 })).sessions.length, 4);
      assert.equal((await client.listSessions({ pageSize: 5 })).sessions.length, 5);
      await rejectsWith(client.listSessions({ pageSize: 6 }), Code.InvalidArgument);
    }));

  test("concurrent watchers per principal (MAX_WATCHERS_PER_PRINCIPAL): at the cap accepted, above RESOURCE_EXHAUSTED, freed on end", async () => {
    const dir = tempDir();
    const a: TestKey = { id: "a", key: `key-${randomUUID()}`, tenant: "t", scopes: ["watch", "read"] };
    const b: TestKey = { id: "b", key: `key-${randomUUID()}`, tenant: "t", scopes: ["watch", "read"] };
    const app = await startTestApp({ env: { MAX_WATCHERS_PER_PRINCIPAL: "2", API_KEYS_FILE: writeApiKeysFile(dir, [a, b]) } });
    const controllers: AbortController[] = [];
    /** Opens a watch and resolves once it is established (its first message), or rejects with its error. */
    const open = async (key: TestKey): Promise<AbortController> => {
      const controller = new AbortController();
      controllers.push(controller);
      const stream = clientWith(app.url, `Bearer ${key.key}`).watchSessions({ sendInitialSnapshot: true }, { signal: controller.signal, timeoutMs: 30_000 });
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next();
      void (async () => {
        try {
          for (;;) if ((await iterator.next()).done === true) return;
        } catch {
          // ended by the test
        }
      })();
      return controller;
    };
    try {
      const first = await open(a);
      await open(a);
      await rejectsWith(open(a), Code.ResourceExhausted);
      await open(b); // another principal is counted apart
      first.abort();
      const deadline = Date.now() + 5000;
      for (;;) {
        try {
          await open(a);
          break;
        } catch (error) {
          if (Date.now() > deadline) throw error;
          await sleep(50);
        }
      }
    } finally {
      for (const c of controllers) c.abort();
      await app.close();
    }
  });
});

describe("deadlines", () => {
  const redis = useRedisServer();

  /** A Connect-protocol JSON call with a server-side deadline only (no client timer). */
  async function callWithDeadline(url: string, method: string, body: unknown, timeoutMs: number): Promise<{ status: number; code: string | undefined }> {
    const res = await fetch(`${url}/session.v1.SessionService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": String(timeoutMs) },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { code?: string };
    return { status: res.status, code: json.code };
  }

  test("a deadline passing while Redis is paused: DEADLINE_EXCEEDED, and each write is all or nothing", () =>
    withApp(
      {},
      async (client, app) => {
        const sessionId = await newSession(client, "deadline-user");
        const before = (await client.getSession({ sessionId })).session?.version ?? 0n;
        const keys = new RedisKeys("sd:", "default");
        const totalBefore = (await client.getSessionMetrics({})).totalSessions;

        await redis.raw.call("CLIENT", "PAUSE", "1500", "WRITE");
        const [set, made] = await Promise.all([
          callWithDeadline(app.url, "SetSessionData", { sessionId, key: "k", value: "v" }, 100),
          callWithDeadline(app.url, "CreateSession", { userId: "deadline-user", dataSource: "paused-src" }, 100),
        ]);
        assert.deepEqual(set, { status: 504, code: "deadline_exceeded" });
        assert.deepEqual(made, { status: 504, code: "deadline_exceeded" });
        await redis.raw.call("CLIENT", "UNPAUSE");
        await sleep(300);

        // SetSessionData: either the value and the version bump, or neither.
        const version = (await client.getSession({ sessionId })).session?.version ?? 0n;
        // With encryption on (as every Redis test app runs), key names in Redis are keyed HMACs.
        const names = new SealedNames(new KeyedFieldCipher(parseKeyring(TEST_ENCRYPTION_KEYS)));
        const present = await redis.raw.hexists(keys.data(sessionId), names.token("default", "data_key", "k"));
        assert.ok((present === 1 && version === before + 1n) || (present === 0 && version === before), `data ${present}, version ${before} → ${version}`);
        // CreateSession: either every part (record, indexes, counters) or none.
        const total = (await client.getSessionMetrics({})).totalSessions;
        const bySource = (await client.listSessions({ dataSource: "paused-src" })).sessions;
        // A few sessions: the data source's index is its first bucket (lower bound 0, see lua/indexes.ts).
        const inIndex = await redis.raw.zcard(keys.dataSourceBucket(names.token("default", "data_source", "paused-src"), "0"));
        if (total === totalBefore) {
          assert.deepEqual([bySource.length, inIndex], [0, 0]);
        } else {
          assert.equal(total, totalBefore + 1n);
          assert.deepEqual([bySource.length, inIndex], [1, 1]);
          assert.equal(await redis.raw.exists(keys.record(bySource[0]?.sessionId ?? "")), 1);
        }
      },
      redis.url,
    ));
});
