/**
 * The typed @grpc/grpc-js client of @sessiond/client ("@sessiond/client/grpc-js")
 * against the real server: the same message types as the Connect client,
 * metadata, deadlines, cancellation, the server-streaming watch, and the typed
 * error helpers on errors of both clients. Then, against a bare @grpc/grpc-js
 * server (which encodes grpc-message as the gRPC spec says), that both clients
 * show a status message exactly as the server wrote it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, equals } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AccessLevel,
  Code,
  ConnectError,
  createSessionClient,
  EventType,
  isDeadlineExceeded,
  isInvalidArgument,
  isNotFound,
  isUnauthenticated,
  isUnavailable,
  SessionSchema,
  SessionStatus,
  statusCode,
  statusMessage,
  WATCH_CURSOR_METADATA,
  watchCursorOf,
  WatchOutOfRangeError,
  watchSessions,
  type SessionEvent,
} from "@sessiond/client";
import { createSessionGrpcClient, SessionServiceDefinition, type SessionGrpcClient } from "@sessiond/client/grpc-js";
import type { App } from "../src/app.js";
import { WATCH_CURSOR_METADATA as SERVER_WATCH_CURSOR_METADATA } from "../src/streaming/watch-protocol.js";
import { tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { startTestApp, waitForWatchers } from "./support/server.js";

const KEY: TestKey = { id: "grpc-js", key: "grpc-js-client-test-key-0123456789abcdef", tenant: "acme", scopes: ["read", "write", "watch"] };
const BEARER = { authorization: `Bearer ${KEY.key}` };

/** The first `count` events of a watch (heartbeats skipped), then leaves the loop. */
async function take(stream: AsyncIterable<{ event?: SessionEvent | undefined }>, count: number): Promise<SessionEvent[]> {
  const events: SessionEvent[] = [];
  for await (const { event } of stream) {
    if (event === undefined || event.type === EventType.HEARTBEAT) continue;
    events.push(event);
    if (events.length === count) break;
  }
  return events;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected the call to fail");
}

describe("@sessiond/client/grpc-js against the real server", () => {
  let app: App;
  let sessions: SessionGrpcClient;
  before(async () => {
    app = await startTestApp({ env: { API_KEYS_FILE: writeApiKeysFile(tempDir(), [KEY]) } });
    sessions = createSessionGrpcClient(`127.0.0.1:${app.port}`, { metadata: BEARER });
  });
  after(async () => {
    sessions.close();
    await app.close();
  });

  test("create, get, list, set and read data, with the Connect client's message types", async () => {
    const { session, created } = await sessions.createSession({
      userId: "grpc-alice",
      dataSource: "warehouse",
      accessLevel: AccessLevel.WRITE,
      ttl: { seconds: 600n },
      metadata: { ip: "10.0.0.7" },
    });
    assert.equal(created, true);
    assert.ok(session !== undefined);
    assert.equal(session.$typeName, "session.v1.Session");
    assert.equal(session.accessLevel, AccessLevel.WRITE);
    assert.equal(session.status, SessionStatus.ACTIVE);
    assert.deepEqual(session.metadata, { ip: "10.0.0.7" });

    const got = await sessions.getSession({ sessionId: session.sessionId });
    assert.equal(got.session?.userId, "grpc-alice");
    // What the Connect client reads is the same message, field for field (the version did not move).
    const connect = createSessionClient(`http://127.0.0.1:${app.port}`, { interceptors: [(next) => (req) => (req.header.set("authorization", BEARER.authorization), next(req))] });
    const viaConnect = await connect.getSession({ sessionId: session.sessionId });
    assert.ok(got.session !== undefined && viaConnect.session !== undefined);
    assert.equal(viaConnect.session.version, got.session.version);
    assert.ok(equals(SessionSchema, { ...viaConnect.session, lastAccessTime: undefined }, { ...got.session, lastAccessTime: undefined }));

    const listed = await sessions.listSessions({ userId: "grpc-alice" });
    assert.deepEqual(
      listed.sessions.map((s) => s.sessionId),
      [session.sessionId],
    );

    await sessions.setSessionData({ sessionId: session.sessionId, key: "cart", value: create(ValueSchema, { kind: { case: "numberValue", value: 3 } }) });
    const data = await sessions.getSessionData({ sessionId: session.sessionId, key: "cart" });
    assert.deepEqual(data.value?.kind, { case: "numberValue", value: 3 });
  });

  test("metadata: the client's and the call's both reach the server", async () => {
    const bare = createSessionGrpcClient(`127.0.0.1:${app.port}`);
    try {
      const error = await rejection(bare.getSessionMetrics({}));
      assert.ok(isUnauthenticated(error), `expected UNAUTHENTICATED, got ${String(error)}`);
      assert.ok(error instanceof Error && "code" in error && error.code === grpc.status.UNAUTHENTICATED, "a grpc-js ServiceError, as grpc-js delivers it");
      const metrics = await bare.getSessionMetrics({}, { metadata: BEARER });
      assert.equal(metrics.$typeName, "session.v1.GetSessionMetricsResponse");
    } finally {
      bare.close();
    }
  });

  test("error helpers read grpc-js errors and ConnectErrors alike", async () => {
    const missing = await rejection(sessions.getSession({ sessionId: crypto.randomUUID() }));
    assert.equal(isNotFound(missing), true);
    assert.equal(statusCode(missing), Code.NotFound);
    assert.equal(isInvalidArgument(missing), false);
    const invalid = await rejection(sessions.getSession({ sessionId: "not-a-uuid" }));
    assert.equal(isInvalidArgument(invalid), true);
    assert.match(statusMessage(invalid) ?? "", /session_id/);

    const connectError = new ConnectError("gone", Code.NotFound);
    assert.equal(isNotFound(connectError), true);
    assert.equal(statusMessage(connectError), "gone");
    for (const other of [new Error("plain"), Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }), undefined, "text"]) {
      assert.equal(statusCode(other), undefined, `not a call's error: ${String(other)}`);
      assert.equal(isNotFound(other), false);
    }
  });

  test("onHeader and onTrailer see the response headers and the final status", async () => {
    let header: grpc.Metadata | undefined;
    let trailer: grpc.StatusObject | undefined;
    await sessions.getSessionMetrics({}, { onHeader: (m) => (header = m), onTrailer: (s) => (trailer = s) });
    assert.ok(header instanceof grpc.Metadata);
    assert.equal(trailer?.code, grpc.status.OK);
  });

  test("deadlines: the call's timeoutMs or deadline ends a watch with DEADLINE_EXCEEDED", async () => {
    const quiet = { userId: "nobody-writes-for-this-user" };
    for (const options of [{ timeoutMs: 300 }, { deadline: Date.now() + 300 }]) {
      const error = await rejection(take(sessions.watchSessions(quiet, options), 1));
      assert.ok(isDeadlineExceeded(error), `expected DEADLINE_EXCEEDED, got ${String(error)}`);
    }
  });

  test("watchSessions streams events; leaving the loop cancels the call on the server", async () => {
    const watch = take(sessions.watchSessions({ userId: "grpc-bob", eventTypes: [EventType.CREATED] }, { timeoutMs: 0 }), 1);
    await waitForWatchers(app, 1);
    const { session } = await sessions.createSession({ userId: "grpc-bob", dataSource: "warehouse" });
    const [event] = await watch;
    assert.equal(event?.$typeName, "session.v1.SessionEvent");
    assert.equal(event?.type, EventType.CREATED);
    assert.equal(event?.session?.sessionId, session?.sessionId);
    assert.notEqual(event?.cursor, "");
    await waitForWatchers(app, 0);
  });

  test("a signal cancels a watch: the loop fails with CANCELLED and the server lets go", async () => {
    const abort = new AbortController();
    const watch = rejection(take(sessions.watchSessions({ userId: "grpc-carol" }, { timeoutMs: 0, signal: abort.signal }), 1));
    await waitForWatchers(app, 1);
    abort.abort();
    assert.equal(statusCode(await watch), Code.Canceled);
    await waitForWatchers(app, 0);
  });

  test("a watch starts with its loop: an error answer waits for the loop, which then throws it", async () => {
    const watch = sessions.watchSessions({ resumeCursor: "17" }, { timeoutMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(isInvalidArgument(await rejection(take(watch, 1))));
  });

  test("a watch sees a session expire", async () => {
    const watch = take(sessions.watchSessions({ userId: "grpc-dave", eventTypes: [EventType.EXPIRED] }, { timeoutMs: 0 }), 1);
    await waitForWatchers(app, 1);
    const { session } = await sessions.createSession({ userId: "grpc-dave", dataSource: "warehouse", ttl: { seconds: 1n } });
    const [event] = await watch;
    assert.equal(event?.type, EventType.EXPIRED);
    assert.equal(event?.session?.sessionId, session?.sessionId);
    assert.equal(event?.session?.status, SessionStatus.EXPIRED);
  });
});

describe("the watch-cursor trailer, through both clients", () => {
  test("a watch ended by a server shutdown names its cursor (grpc-js and Connect)", async () => {
    assert.equal(WATCH_CURSOR_METADATA, SERVER_WATCH_CURSOR_METADATA, "the package and the server agree on the trailer's name");
    const app = await startTestApp();
    const grpcClient = createSessionGrpcClient(`127.0.0.1:${app.port}`);
    const connect = createSessionClient(`http://127.0.0.1:${app.port}`);
    try {
      await grpcClient.createSession({ userId: "erin", dataSource: "warehouse" });
      const viaGrpc = rejection(take(grpcClient.watchSessions({ userId: "erin", sendInitialSnapshot: true }, { timeoutMs: 0 }), 1_000));
      const viaConnect = rejection(take(connect.watchSessions({ userId: "erin", sendInitialSnapshot: true }, { timeoutMs: 0 }), 1_000));
      await waitForWatchers(app, 2);
      await app.close();
      for (const error of [await viaGrpc, await viaConnect]) {
        assert.ok(isUnavailable(error), `expected UNAVAILABLE, got ${String(error)}`);
        assert.match(watchCursorOf(error) ?? "", /.+/, "the trailer names a cursor");
      }
    } finally {
      grpcClient.close();
      await app.close();
    }
  });
});

describe("the resuming watch helper with the grpc-js client", () => {
  // A helper that took these for retryable errors would watch again forever: the timeout ends such a test.
  test("OUT_OF_RANGE becomes WatchOutOfRangeError; INVALID_ARGUMENT is thrown as it is", { timeout: 60_000 }, async () => {
    const app = await startTestApp();
    const client = createSessionGrpcClient(`127.0.0.1:${app.port}`);
    try {
      await assert.rejects(watchSessions(client, {}, { resumeCursor: "99999999999999-0" }).next(), (error: unknown) => {
        assert.ok(error instanceof WatchOutOfRangeError, `expected WatchOutOfRangeError, got ${String(error)}`);
        assert.equal(error.cause.code, Code.OutOfRange);
        return true;
      });
      await assert.rejects(watchSessions(client, {}, { resumeCursor: "17" }).next(), (error: unknown) => isInvalidArgument(error));
    } finally {
      client.close();
      await app.close();
    }
  });

  test("a server shutdown is a reconnect from the last cursor, which the trailer names too", { timeout: 60_000 }, async () => {
    const app = await startTestApp();
    const client = createSessionGrpcClient(`127.0.0.1:${app.port}`);
    const stop = new AbortController();
    const reconnects: { code: Code; attempt: number; cursor: string; told: string | undefined }[] = [];
    let cursor = "";
    try {
      await client.createSession({ userId: "frank", dataSource: "warehouse" });
      const seen: EventType[] = [];
      const loop = (async () => {
        const onReconnect = (error: ConnectError, attempt: number, at: string): void => {
          reconnects.push({ code: error.code, attempt, cursor: at, told: watchCursorOf(error) });
          stop.abort();
        };
        for await (const event of watchSessions(client, { userId: "frank", sendInitialSnapshot: true }, { signal: stop.signal, onReconnect })) {
          seen.push(event.type);
          if (event.type === EventType.HEARTBEAT && cursor === "") cursor = event.cursor;
        }
      })();
      for (let waited = 0; cursor === "" && waited < 10_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10));
      await app.close();
      await loop;
      assert.deepEqual(seen, [EventType.SNAPSHOT, EventType.HEARTBEAT]);
      assert.notEqual(cursor, "");
      assert.deepEqual(reconnects, [{ code: Code.Unavailable, attempt: 1, cursor, told: cursor }]);
    } finally {
      stop.abort();
      client.close();
      await app.close();
    }
  });
});

describe("status messages arrive exactly as the server wrote them", () => {
  // ':' and ',' are printable (sent as they are), '%' and the non-ASCII bytes are percent-encoded on the wire.
  const MESSAGE = "session_id: must be a UUID, 100% sure — ünïcødé ✓ %41";
  let server: grpc.Server;
  let port: number;
  before(async () => {
    server = new grpc.Server();
    server.addService(SessionServiceDefinition, {
      getSession: (_call: unknown, callback: grpc.sendUnaryData<never>) => callback({ code: grpc.status.NOT_FOUND, details: MESSAGE }),
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
  });
  after(() => server.forceShutdown());

  test("the grpc-js client", async () => {
    const client = createSessionGrpcClient(`127.0.0.1:${port}`);
    try {
      const error = await rejection(client.getSession({ sessionId: crypto.randomUUID() }));
      assert.equal(isNotFound(error), true);
      assert.equal(statusMessage(error), MESSAGE);
      assert.equal((error as grpc.ServiceError).details, MESSAGE);
    } finally {
      client.close();
    }
  });

  test("the Connect client", async () => {
    const error = await rejection(createSessionClient(`http://127.0.0.1:${port}`).getSession({ sessionId: crypto.randomUUID() }));
    assert.equal(isNotFound(error), true);
    assert.equal(statusMessage(error), MESSAGE);
  });
});
