/**
 * sessiond's lean WatchSessions reader (packages/client/src/watch-reader.ts) against
 * the real server: the same events as the generated client, messages split
 * across DATA frames, the server's statuses and trailers as ConnectErrors,
 * cancellation that frees the server's watcher, HTTP/2 back-pressure from a
 * consumer that stops reading (RESOURCE_EXHAUSTED, then the resuming helper
 * catches up with no gap and no duplicate), headers for credentials, TLS, and
 * the shutdown trailer.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import type { App } from "../src/app.js";
import {
  AccessLevel,
  Code,
  ConnectError,
  createSessionClient,
  createWatchReader,
  EventType,
  WATCH_CURSOR_METADATA,
  watchSessions,
  WatchOutOfRangeError,
  type SessionClient,
  type SessionEvent,
  type WatchSessionsCaller,
} from "@sessiond/client";
import { startTestApp, waitForWatchers } from "./support/server.js";
import { tempDir, writeApiKeysFile } from "./support/auth.js";
import { makeSelfSignedCertificate } from "./support/tls.js";

/** What two readers must agree on for one event. */
function summary(event: SessionEvent): string {
  const pad = event.session?.metadata?.["pad"];
  return [EventType[event.type], event.cursor, event.session?.sessionId ?? "", String(event.session?.version ?? ""), typeof pad === "string" ? pad.length : 0, event.dataKeys.join(",")].join(" ");
}

const isLive = (event: SessionEvent): boolean => event.type !== EventType.HEARTBEAT && event.type !== EventType.SNAPSHOT;

/** Collects the live events of one watch in the background until stop(). */
function collect(caller: WatchSessionsCaller, request: Parameters<WatchSessionsCaller["watchSessions"]>[0]): { events: SessionEvent[]; ended: Promise<unknown>; stop(): void } {
  const abort = new AbortController();
  const events: SessionEvent[] = [];
  const ended = (async () => {
    try {
      for await (const response of caller.watchSessions(request, { signal: abort.signal, timeoutMs: 0 })) {
        if (response.event !== undefined && isLive(response.event)) events.push(response.event);
      }
      return undefined;
    } catch (error) {
      return error;
    }
  })();
  return { events, ended, stop: () => abort.abort() };
}

async function until(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function assertConnectError(error: unknown, code: Code, message?: RegExp): ConnectError {
  assert.ok(error instanceof ConnectError, `expected a ConnectError, got ${String(error)}`);
  assert.equal(error.code, code, `expected ${Code[code]}, got ${Code[error.code]}: ${error.message}`);
  if (message !== undefined) assert.match(error.rawMessage, message);
  return error;
}

/** The first value of a watch, or its error. */
async function firstOf(caller: WatchSessionsCaller, request: Parameters<WatchSessionsCaller["watchSessions"]>[0], timeoutMs?: number): Promise<unknown> {
  try {
    for await (const response of caller.watchSessions(request, timeoutMs === undefined ? {} : { timeoutMs })) return response;
    return undefined;
  } catch (error) {
    return error;
  }
}

/** A loopback port that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === "object");
  return address.port;
}

describe("WatchReader", () => {
  let app: App;
  let writer: SessionClient;
  before(async () => {
    app = await startTestApp({ env: { WATCH_HEARTBEAT: "50ms", WATCH_QUEUE_LIMIT: "20", MAX_METADATA_BYTES: "1048576" } });
    writer = createSessionClient(app.url);
  });
  after(() => app.close());

  it("reads the same events as the generated client, a 300 KiB session whole across DATA frames", async () => {
    const reader = createWatchReader(app.url);
    const lean = collect(reader, { userId: "same" });
    const generated = collect(writer, { userId: "same" });
    try {
      await waitForWatchers(app, 2);
      const pad = "x".repeat(300 * 1024);
      const { session } = await writer.createSession({ userId: "same", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { pad } });
      const id = session?.sessionId ?? "";
      await writer.updateSession({ sessionId: id, metadata: { pad: "small" } });
      await writer.setSessionData({ sessionId: id, key: "k", value: { kind: { case: "numberValue", value: 1 } } });
      await writer.createSession({ userId: "someone-else", dataSource: "d" });
      await writer.closeSession({ sessionId: id });
      await until("four events at both", () => lean.events.length >= 4 && generated.events.length >= 4);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(lean.events.map(summary), generated.events.map(summary));
      assert.deepEqual(
        lean.events.map((e) => e.type),
        [EventType.CREATED, EventType.UPDATED, EventType.DATA_CHANGED, EventType.CLOSED],
      );
      assert.equal(lean.events[0]?.session?.metadata?.["pad"], pad, "the large session arrives whole");
    } finally {
      lean.stop();
      generated.stop();
      reader.close();
    }
    await waitForWatchers(app, 0);
  });

  it("decodes an event once for the watches of one reader that receive it: the same frozen message; other filters' events stay apart", async () => {
    const reader = createWatchReader(app.url);
    const first = collect(reader, { userId: "shared" });
    const second = collect(reader, { userId: "shared" });
    const other = collect(reader, { userId: "shared-other" });
    try {
      await waitForWatchers(app, 3);
      const { session } = await writer.createSession({ userId: "shared", dataSource: "d", metadata: { nested: { list: [1, "two"] } } });
      await writer.createSession({ userId: "shared-other", dataSource: "d" });
      await writer.updateSession({ sessionId: session?.sessionId ?? "", metadata: { n: 2 } });
      await until("the events at every watch", () => first.events.length >= 2 && second.events.length >= 2 && other.events.length >= 1);
      assert.deepEqual(first.events.map(summary), second.events.map(summary));
      for (const [i, event] of first.events.entries()) {
        assert.equal(second.events[i], event, `event ${i}: one message for both watches`);
        assert.ok(Object.isFrozen(event) && Object.isFrozen(event.session) && Object.isFrozen(event.session?.metadata), `event ${i} is frozen, nested messages too`);
        assert.throws(() => {
          (event as { cursor: string }).cursor = "changed";
        }, TypeError);
      }
      assert.deepEqual(first.events[0]?.session?.metadata, { nested: { list: [1, "two"] } });
      assert.deepEqual(
        other.events.map((e) => e.session?.userId),
        ["shared-other"],
        "a watch with another filter has only its own events",
      );
    } finally {
      first.stop();
      second.stop();
      other.stop();
      reader.close();
    }
    await waitForWatchers(app, 0);
  });

  it("gives the server's statuses as ConnectErrors: INVALID_ARGUMENT naming the field", async () => {
    const reader = createWatchReader(app.url);
    try {
      assertConnectError(await firstOf(reader, { resumeCursor: "not-a-cursor" }), Code.InvalidArgument, /^resume_cursor/);
      assertConnectError(await firstOf(reader, { userId: "x".repeat(10_000) }), Code.InvalidArgument, /^user_id/);
    } finally {
      reader.close();
    }
  });

  it("cancels on abort and when the loop is left, and the server frees the watcher", async () => {
    const reader = createWatchReader(app.url);
    try {
      const watch = collect(reader, {});
      await waitForWatchers(app, 1);
      watch.stop();
      assertConnectError(await watch.ended, Code.Canceled);
      await waitForWatchers(app, 0);

      for await (const response of reader.watchSessions({}, {})) {
        assert.equal(response.event?.type, EventType.HEARTBEAT);
        break;
      }
      await waitForWatchers(app, 0);

      // Closing the reader ends its open watches too.
      const closing = createWatchReader(app.url);
      const open = collect(closing, {});
      await waitForWatchers(app, 1);
      closing.close();
      assertConnectError(await open.ended, Code.Canceled);
      await waitForWatchers(app, 0);

      const aborted = AbortSignal.abort();
      assertConnectError(await (async () => {
        try {
          for await (const _ of reader.watchSessions({}, { signal: aborted })) return undefined;
        } catch (error) {
          return error;
        }
      })(), Code.Canceled);
    } finally {
      reader.close();
    }
  });

  it("a consumer that stops reading is ended by the server (RESOURCE_EXHAUSTED); the helper resumes with no gap and no duplicate", async () => {
    // The reader pauses its stream past 4 undelivered messages, so HTTP/2 flow control stops the server,
    // whose queue for this watcher (WATCH_QUEUE_LIMIT 20) then overflows. A reader that buffered without
    // end would never be ended.
    const reader = createWatchReader(app.url, { maxQueuedMessages: 4 });
    const abort = new AbortController();
    const reconnects: ConnectError[] = [];
    const events = watchSessions(reader, { userId: "slow" }, { signal: abort.signal, initialBackoffMs: 10, onReconnect: (error) => void reconnects.push(error) });
    const TOTAL = 200;
    try {
      const first = await events.next();
      assert.equal(first.value?.type, EventType.HEARTBEAT);
      await waitForWatchers(app, 1);
      // 200 events of 2 KiB: far more than a stream's 64 KiB window and the buffers around it.
      const pad = "p".repeat(2048);
      const created: string[] = [];
      for (let i = 0; i < TOTAL; i++) {
        const { session } = await writer.createSession({ userId: "slow", dataSource: "d", metadata: { i, pad } });
        created.push(session?.sessionId ?? "");
      }
      const received: SessionEvent[] = [];
      while (received.length < TOTAL) {
        const next = await events.next();
        assert.ok(next.done !== true);
        if (isLive(next.value)) received.push(next.value);
      }
      assert.ok(reconnects.length >= 1, "the server ended the stalled watch");
      const exhausted = assertConnectError(reconnects[0], Code.ResourceExhausted);
      assert.match(exhausted.metadata.get(WATCH_CURSOR_METADATA) ?? "", /^\d+-\d+$/, "with the cursor to resume from");
      assert.deepEqual(
        received.map((e) => e.session?.sessionId),
        created,
        "every event once, in order, across the reconnect",
      );
    } finally {
      abort.abort();
      await events.return();
      reader.close();
    }
  });

  it("UNAVAILABLE when nothing listens; DEADLINE_EXCEEDED past timeoutMs", async () => {
    const nobody = createWatchReader(`http://127.0.0.1:${await closedPort()}`);
    try {
      assertConnectError(await firstOf(nobody, {}), Code.Unavailable);
    } finally {
      nobody.close();
    }
    const reader = createWatchReader(app.url);
    try {
      const started = Date.now();
      const error = await (async () => {
        try {
          for await (const _ of reader.watchSessions({ userId: "nobody" }, { timeoutMs: 200 })) continue;
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      assertConnectError(error, Code.DeadlineExceeded);
      assert.ok(Date.now() - started >= 150, "not before the deadline");
    } finally {
      reader.close();
    }
  });
});

describe("WatchReader: an out-of-range cursor", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: { WATCH_RETENTION_EVENTS: "5", WATCH_HEARTBEAT: "20ms" } });
  });
  after(() => app.close());

  it("answers OUT_OF_RANGE, which the helper surfaces as WatchOutOfRangeError", async () => {
    const writer = createSessionClient(app.url);
    const { session } = await writer.createSession({ userId: "old", dataSource: "d" });
    const reader = createWatchReader(app.url);
    try {
      let cursor = "";
      for await (const response of reader.watchSessions({ sendInitialSnapshot: true })) {
        if (response.event?.type === EventType.HEARTBEAT) {
          cursor = response.event.cursor;
          break;
        }
      }
      assert.ok(session !== undefined && cursor !== "");
      for (let i = 0; i < 10; i++) await writer.updateSession({ sessionId: session.sessionId, metadata: { i } });
      assertConnectError(await firstOf(reader, { resumeCursor: cursor }), Code.OutOfRange);
      await assert.rejects(watchSessions(reader, {}, { resumeCursor: cursor }).next(), (error: unknown) => error instanceof WatchOutOfRangeError && error.cursor === cursor);
    } finally {
      reader.close();
    }
  });
});

describe("WatchReader: headers, TLS and shutdown", () => {
  let dir: string;
  before(() => {
    dir = tempDir();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("sends the reader's and the call's headers (credentials)", async () => {
    const key = { id: "watcher", key: "k-watch-reader-test", tenant: "acme", scopes: ["read", "write", "watch"] };
    const app = await startTestApp({ env: { API_KEYS_FILE: writeApiKeysFile(dir, [key]), WATCH_HEARTBEAT: "20ms" } });
    try {
      const anonymous = createWatchReader(app.url);
      assertConnectError(await firstOf(anonymous, {}), Code.Unauthenticated);
      anonymous.close();
      const withKey = createWatchReader(app.url, { headers: { authorization: `Bearer ${key.key}` } });
      const first = await firstOf(withKey, {});
      assert.ok(!(first instanceof Error), String(first));
      withKey.close();
      const perCall = createWatchReader(app.url);
      for await (const response of perCall.watchSessions({}, { headers: { authorization: `Bearer ${key.key}` } })) {
        assert.equal(response.event?.type, EventType.HEARTBEAT);
        break;
      }
      perCall.close();
    } finally {
      await app.close();
    }
  });

  it("reads over TLS with the CA given in nodeOptions", async () => {
    const { certFile, keyFile } = makeSelfSignedCertificate(dir);
    const app = await startTestApp({ env: { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile, WATCH_HEARTBEAT: "20ms" } });
    try {
      assert.match(app.url, /^https:/);
      // As connect's own client: a TLS failure is an error with the reason, not a retryable UNAVAILABLE.
      const untrusted = createWatchReader(app.url);
      const refused = await firstOf(untrusted, {});
      assert.ok(refused instanceof ConnectError && /certificate/.test(refused.rawMessage), String(refused));
      untrusted.close();
      const reader = createWatchReader(app.url, { nodeOptions: { ca: readFileSync(certFile) } });
      const first = await firstOf(reader, {});
      assert.ok(!(first instanceof Error), String(first));
      reader.close();
    } finally {
      await app.close();
    }
  });

  it("ends with UNAVAILABLE and the watch-cursor of the last event on shutdown", async () => {
    const app = await startTestApp({ env: { WATCH_HEARTBEAT: "1h" } });
    const reader = createWatchReader(app.url);
    const watch = collect(reader, {});
    try {
      await waitForWatchers(app, 1);
      const writer = createSessionClient(app.url);
      await writer.createSession({ userId: "u", dataSource: "d" });
      await until("the event", () => watch.events.length === 1);
      await app.close();
      const error = assertConnectError(await watch.ended, Code.Unavailable);
      assert.equal(error.metadata.get(WATCH_CURSOR_METADATA), watch.events[0]?.cursor);
    } finally {
      watch.stop();
      reader.close();
    }
  });
});
