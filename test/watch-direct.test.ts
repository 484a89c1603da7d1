/**
 * WatchSessions' direct write path (src/api/watch-direct.ts) against the real
 * server, next to connect's own path, with every client the service supports:
 * the exported gRPC client, @grpc/grpc-js (plain and gzip), Connect binary
 * over HTTP/2 (plain and gzip), gRPC-Web over HTTP/2 and HTTP/1.1, Connect
 * JSON over HTTP/1.1, sessiond's WatchReader, and a raw node:http2 gRPC
 * reader that checks each envelope's compression flag itself.
 *
 * Every watcher starts with a snapshot (connect's path), then a burst of
 * creates, updates, data changes and closes while heartbeats fire every 10 ms
 * between the live events (both through the direct path for the binary
 * HTTP/2 watchers, once connect sent the headers). Each must receive exactly the events a replay from the
 * log returns, in the same order, with the same cursors and decodable
 * sessions, and its heartbeats must never run ahead of or behind its events.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { compressionGzip, createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { fromBinary, toBinary, create } from "@bufbuild/protobuf";
import type { App } from "../src/app.js";
import {
  AccessLevel,
  createSessionClient,
  createWatchReader,
  EventType,
  SessionService,
  WatchSessionsRequestSchema,
  WatchSessionsResponseSchema,
  type SessionClient,
  type SessionEvent,
} from "@sessiond/client";
import { compareEventIds } from "../src/store/event-id.js";
import { useRedisServer } from "./support/redis-server.js";
import { startTestApp, type TestAppOptions } from "./support/server.js";

/** What every client must agree on for one received item. */
interface Seen {
  readonly type: number;
  readonly cursor: string;
  readonly sessionId: string;
  readonly version: string;
  readonly status: number;
  readonly dataKeys: readonly string[];
  /** metadata.step, or -1 */
  readonly step: number;
  /** The length of metadata.pad (proves large sessions decode whole), or 0. */
  readonly padLength: number;
}

interface Watcher {
  readonly name: string;
  readonly items: Seen[];
  /** Set when the stream failed before the test closed it. */
  failure: unknown;
  close(): void;
}

/** More than connect's compressMinBytes (1 KiB): connect compresses such messages when gzip was negotiated. */
const PAD = "p".repeat(1500);

function fromProto(event: SessionEvent): Seen {
  const metadata = event.session?.metadata ?? {};
  const step = metadata["step"];
  const pad = metadata["pad"];
  return {
    type: event.type,
    cursor: event.cursor,
    sessionId: event.session?.sessionId ?? "",
    version: String(event.session?.version ?? ""),
    status: event.session?.status ?? 0,
    dataKeys: [...event.dataKeys],
    step: typeof step === "number" ? step : -1,
    padLength: typeof pad === "string" ? pad.length : 0,
  };
}

function connectWatcher(name: string, client: SessionClient): Watcher {
  const abort = new AbortController();
  const watcher: Watcher = { name, items: [], failure: undefined, close: () => abort.abort() };
  void (async () => {
    try {
      for await (const response of client.watchSessions({ sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 })) {
        if (response.event !== undefined) watcher.items.push(fromProto(response.event));
      }
      watcher.failure = new Error("the stream ended");
    } catch (error) {
      if (!abort.signal.aborted) watcher.failure = error;
    }
  })();
  return watcher;
}

/** sessiond's lean reader (packages/client/src/watch-reader.ts): its own envelope parsing, on connect-node's session manager. */
function readerWatcher(name: string, url: string): Watcher {
  const abort = new AbortController();
  const watcher: Watcher = { name, items: [], failure: undefined, close: () => abort.abort() };
  void (async () => {
    try {
      for await (const response of createWatchReader(url).watchSessions({ sendInitialSnapshot: true }, { signal: abort.signal })) {
        if (response.event !== undefined) watcher.items.push(fromProto(response.event));
      }
      watcher.failure = new Error("the stream ended");
    } catch (error) {
      if (!abort.signal.aborted) watcher.failure = error;
    }
  })();
  return watcher;
}

/** session.v1 as @grpc/proto-loader reads the .proto at run time (enums as numbers, longs as strings). */
const GrpcService = (() => {
  const definition = protoLoader.loadSync("session/v1/session.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    longs: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  return ((loaded["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["SessionService"] as grpc.ServiceClientConstructor;
})();

interface GrpcJsValue {
  stringValue?: string;
  numberValue?: number;
  kind?: string;
}
interface GrpcJsEvent {
  type: number;
  cursor: string;
  dataKeys: string[];
  session: {
    sessionId: string;
    version: string;
    status: number;
    metadata: { fields: Record<string, GrpcJsValue> } | null;
  } | null;
}

function grpcJsWatcher(name: string, address: string, options: grpc.ChannelOptions): Watcher {
  const client = new GrpcService(address, grpc.credentials.createInsecure(), options);
  const definition = GrpcService.service["WatchSessions"];
  assert.ok(definition !== undefined);
  const call = client.makeServerStreamRequest(
    definition.path,
    definition.requestSerialize,
    definition.responseDeserialize,
    { sendInitialSnapshot: true },
    new grpc.Metadata(),
    {},
  );
  let closed = false;
  const watcher: Watcher = {
    name,
    items: [],
    failure: undefined,
    close: () => {
      closed = true;
      call.cancel();
      client.close();
    },
  };
  call.on("data", (response: { event: GrpcJsEvent | null }) => {
    const event = response.event;
    assert.ok(event !== null);
    const fields = event.session?.metadata?.fields ?? {};
    watcher.items.push({
      type: event.type,
      cursor: event.cursor,
      sessionId: event.session?.sessionId ?? "",
      version: event.session?.version ?? "",
      status: event.session?.status ?? 0,
      dataKeys: event.dataKeys,
      step: fields["step"]?.numberValue ?? -1,
      padLength: fields["pad"]?.stringValue?.length ?? 0,
    });
  });
  call.on("error", (error) => {
    if (!closed) watcher.failure = error;
  });
  return watcher;
}

/**
 * A gRPC reader on node:http2 that offers gzip and parses the envelopes
 * itself: a flag-1 message must gunzip, a flag-0 message must parse as it is.
 */
interface RawWatcher extends Watcher {
  /** Messages that came compressed (flag 1) and uncompressed (flag 0) though over 1 KiB. */
  readonly counts: { compressed: number; largeUncompressed: number };
  readonly responseHeaders: Promise<http2.IncomingHttpHeaders>;
  /** The HTTP/2 stream: pause() stops reading (and so the flow-control window updates). */
  readonly stream: http2.ClientHttp2Stream;
  /** The trailers the stream ended with. */
  readonly trailers: Promise<http2.IncomingHttpHeaders>;
}

function rawGrpcWatcher(name: string, url: string): RawWatcher {
  const session = http2.connect(url);
  session.on("error", () => {});
  const request = session.request({
    ":method": "POST",
    ":path": `/${SessionService.typeName}/WatchSessions`,
    "content-type": "application/grpc+proto",
    te: "trailers",
    "grpc-accept-encoding": "gzip",
  });
  const message = toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, { sendInitialSnapshot: true }));
  const envelope = Buffer.alloc(5 + message.byteLength);
  envelope.writeUInt32BE(message.byteLength, 1);
  envelope.set(message, 5);
  request.end(envelope);
  let closed = false;
  const watcher: RawWatcher = {
    name,
    items: [],
    failure: undefined,
    counts: { compressed: 0, largeUncompressed: 0 },
    responseHeaders: new Promise((resolve) => request.once("response", resolve)),
    stream: request,
    trailers: new Promise((resolve) => request.once("trailers", resolve)),
    close: () => {
      closed = true;
      request.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
  };
  let buffered = Buffer.alloc(0);
  request.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5) {
      const length = buffered.readUInt32BE(1);
      if (buffered.length < 5 + length) break;
      const flag = buffered.readUInt8(0);
      const payload = buffered.subarray(5, 5 + length);
      buffered = buffered.subarray(5 + length);
      try {
        assert.ok(flag === 0 || flag === 1, `flag ${flag}`);
        if (flag === 1) watcher.counts.compressed++;
        else if (length > 1024) watcher.counts.largeUncompressed++;
        const response = fromBinary(WatchSessionsResponseSchema, flag === 1 ? gunzipSync(payload) : payload);
        assert.ok(response.event !== undefined);
        watcher.items.push(fromProto(response.event));
      } catch (error) {
        watcher.failure ??= error;
      }
    }
  });
  request.on("error", (error) => {
    if (!closed) watcher.failure ??= error;
  });
  request.on("end", () => {
    if (!closed) watcher.failure ??= new Error("the stream ended");
  });
  return watcher;
}

const isLive = (item: Seen): boolean => item.type !== EventType.SNAPSHOT && item.type !== EventType.HEARTBEAT;

/** Waits for `condition`, failing with `what` after `timeoutMs` (or as soon as a watcher failed). */
async function until(what: string, watchers: readonly Watcher[], condition: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const failed = watchers.find((w) => w.failure !== undefined);
    if (failed !== undefined) assert.fail(`${failed.name} failed: ${String(failed.failure)}`);
    if (condition()) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** Collects `n` events of a resumed watch: the log's own order, read through connect's path. */
async function replay(client: SessionClient, resumeCursor: string, n: number): Promise<Seen[]> {
  const abort = new AbortController();
  const seen: Seen[] = [];
  const timer = setTimeout(() => abort.abort(), 15_000);
  try {
    for await (const response of client.watchSessions({ resumeCursor }, { signal: abort.signal, timeoutMs: 0 })) {
      if (response.event !== undefined && response.event.type !== EventType.HEARTBEAT) seen.push(fromProto(response.event));
      if (seen.length === n) break;
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  assert.equal(seen.length, n, "the replay returned every event");
  return seen;
}

/**
 * Heartbeats carry the position everything before them reached: never behind
 * an event already sent, never ahead of one sent later. Checks that for one
 * watcher's items after its snapshot.
 */
function assertHeartbeatsInOrder(watcher: Watcher, fromIndex: number): void {
  let position = "";
  for (const item of watcher.items.slice(fromIndex)) {
    if (position !== "") {
      const order = compareEventIds(item.cursor, position);
      if (item.type === EventType.HEARTBEAT) assert.ok(order >= 0, `${watcher.name}: heartbeat ${item.cursor} behind ${position}`);
      else assert.ok(order > 0, `${watcher.name}: event ${item.cursor} not after ${position}`);
    }
    position = item.cursor;
  }
}

/**
 * Opens the watchers, runs the burst and checks what each received. Returns
 * the watchers for protocol-specific checks (closed already).
 */
async function runBurst(app: App, watchers: readonly Watcher[], writer: SessionClient, operations: number): Promise<void> {
  try {
    // The snapshot (connect's path) ends with a heartbeat: every watcher has it, then registers live.
    const SNAPSHOT = 4;
    await until("the snapshots", watchers, () => watchers.every((w) => w.items.length >= SNAPSHOT + 1));
    await until("every watcher registered", watchers, () => app.events.subscriberCount === watchers.length);
    for (const w of watchers) {
      assert.deepEqual(
        w.items.slice(0, SNAPSHOT).map((i) => i.type),
        Array<number>(SNAPSHOT).fill(EventType.SNAPSHOT),
        `${w.name}: snapshot first`,
      );
      assert.equal(w.items[SNAPSHOT]?.type, EventType.HEARTBEAT, `${w.name}: the snapshot ends with a heartbeat`);
    }
    const first = watchers[0];
    assert.ok(first !== undefined);
    const snapshotEnd = first.items[SNAPSHOT]?.cursor ?? "";
    for (const w of watchers) {
      assert.deepEqual(w.items.slice(0, SNAPSHOT + 1), first.items.slice(0, SNAPSHOT + 1), `${w.name}: the same snapshot as ${first.name}`);
    }

    // The burst: creates, updates (some over 1 KiB), data changes and closes; in groups, some concurrent,
    // with pauses long enough for 10 ms heartbeats to fire between the live events.
    const live: string[] = [];
    let done = 0;
    let step = 0;
    /** Sessions an operation in flight works on: concurrent operations never touch the same one. */
    const busy = new Set<string>();
    const one = async (): Promise<void> => {
      const n = step++;
      const free = live.filter((id) => !busy.has(id));
      const id = free[n % Math.max(1, free.length)];
      const kind = live.length < 3 ? 0 : n % 4;
      if (id !== undefined) busy.add(id);
      if (kind === 0 || id === undefined) {
        const { session } = await writer.createSession({ userId: `u${n % 3}`, dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { step: n, ...(n % 2 === 0 ? { pad: PAD } : {}) } });
        live.push(session?.sessionId ?? "");
      } else if (kind === 1) {
        await writer.updateSession({ sessionId: id, metadata: { step: n, ...(n % 3 === 0 ? { pad: PAD } : {}) } });
      } else if (kind === 2) {
        await writer.setSessionData({ sessionId: id, key: `k${n}`, value: { kind: { case: "numberValue", value: n } } });
      } else {
        live.splice(live.indexOf(id), 1);
        await writer.closeSession({ sessionId: id });
      }
      if (id !== undefined) busy.delete(id);
      done++;
    };
    while (done < operations) {
      const group = Math.min(operations - done, 1 + (done % 7));
      if (done % 3 === 0) await Promise.all(Array.from({ length: group }, one));
      else for (let i = 0; i < group; i++) await one();
      if (done % 50 < 7) {
        // Wait for a heartbeat after the latest event at every watcher: heartbeats provably interleave.
        const seen = (w: Watcher): number => w.items.filter(isLive).length;
        await until("a heartbeat after the events so far", watchers, () =>
          watchers.every((w) => seen(w) === done && w.items.at(-1)?.type === EventType.HEARTBEAT),
        );
      } else {
        await sleep(done % 2 === 0 ? 12 : 0);
      }
    }
    await until(`${operations} live events at every watcher`, watchers, () => watchers.every((w) => w.items.filter(isLive).length >= operations));
    await sleep(30); // anything extra (a duplicate) would arrive now

    const expected = await replay(writer, snapshotEnd, operations);
    for (const w of watchers) {
      assert.equal(w.failure, undefined, `${w.name} failed`);
      assert.deepEqual(w.items.filter(isLive), expected, `${w.name}: the same events, in log order, as the replay`);
      assertHeartbeatsInOrder(w, SNAPSHOT);
      const heartbeats = w.items.slice(SNAPSHOT + 1).filter((i) => i.type === EventType.HEARTBEAT).length;
      assert.ok(heartbeats >= 2, `${w.name}: heartbeats between the live events (${heartbeats})`);
    }
    const padded = expected.filter((e) => e.padLength > 0);
    assert.ok(padded.every((e) => e.padLength === PAD.length) && padded.length > 0, "large sessions arrive whole");
    assert.deepEqual(
      new Set(expected.map((e) => e.type)),
      new Set([EventType.CREATED, EventType.UPDATED, EventType.DATA_CHANGED, EventType.CLOSED]),
      "every kind of live event",
    );
  } finally {
    for (const w of watchers) w.close();
  }
}

/** Four sessions for the snapshot, two of them over 1 KiB. */
async function seed(writer: SessionClient): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await writer.createSession({ userId: "seed", dataSource: "d", metadata: { step: 1000 + i, ...(i % 2 === 0 ? { pad: PAD } : {}) } });
  }
}

/** An app and a writer client, with four seeded sessions: started before the describe's tests, closed after them. */
function useSeededApp(options: () => TestAppOptions): { readonly app: App; readonly writer: SessionClient } {
  const fixture = {} as { app: App; writer: SessionClient };
  before(async () => {
    fixture.app = await startTestApp(options());
    fixture.writer = createSessionClient(fixture.app.url);
    await seed(fixture.writer);
  });
  after(async () => {
    await fixture.app.close();
  });
  return fixture;
}

describe("direct watch writes next to connect's path (MemoryStore)", () => {
  const t = useSeededApp(() => ({ env: { WATCH_HEARTBEAT: "10ms" } }));

  it("every protocol receives the same events, cursors and sessions, in order, with heartbeats between", async () => {
    const gzip = { sendCompression: compressionGzip, acceptCompression: [compressionGzip] };
    const raw = rawGrpcWatcher("raw gRPC h2 (gzip offered)", t.app.url);
    const watchers: Watcher[] = [
      connectWatcher("exported client (gRPC h2)", createSessionClient(t.app.url)),
      connectWatcher("connect-node gRPC h2 gzip", createClient(SessionService, createGrpcTransport({ baseUrl: t.app.url, ...gzip }))),
      grpcJsWatcher("grpc-js", `127.0.0.1:${t.app.port}`, {}),
      grpcJsWatcher("grpc-js gzip", `127.0.0.1:${t.app.port}`, { "grpc.default_compression_algorithm": 2 }),
      connectWatcher("Connect binary h2", createSessionClient(t.app.url, { protocol: "connect" })),
      connectWatcher(
        "Connect binary h2 gzip",
        createClient(SessionService, createConnectTransport({ baseUrl: t.app.url, httpVersion: "2", useBinaryFormat: true, ...gzip })),
      ),
      connectWatcher("Connect JSON h1", createClient(SessionService, createConnectTransport({ baseUrl: t.app.url, httpVersion: "1.1" }))),
      connectWatcher("gRPC-Web h1", createClient(SessionService, createGrpcWebTransport({ baseUrl: t.app.url, httpVersion: "1.1" }))),
      connectWatcher("gRPC-Web h2", createClient(SessionService, createGrpcWebTransport({ baseUrl: t.app.url, httpVersion: "2" }))),
      connectWatcher("gRPC-Web h2 gzip", createClient(SessionService, createGrpcWebTransport({ baseUrl: t.app.url, httpVersion: "2", ...gzip }))),
      readerWatcher("WatchReader", t.app.url),
      raw,
    ];
    await runBurst(t.app, watchers, t.writer, 200);
    assert.equal((await raw.responseHeaders)["grpc-encoding"], "gzip", "the raw reader negotiated gzip");
    // Connect compressed the large snapshot items; the direct path sent large live events uncompressed (flag 0),
    // and both decoded (checked while reading).
    assert.ok(raw.counts.compressed > 0, "connect's path compressed large messages");
    assert.ok(raw.counts.largeUncompressed > 0, "the direct path carried large live events, flagged uncompressed");
  });
});

describe("direct watch writes under backpressure (MemoryStore)", () => {
  const t = useSeededApp(() => ({ env: { WATCH_HEARTBEAT: "10ms" } }));

  it("a reader that stops reading gets every event, in order, once it reads again", async () => {
    // Far more than the HTTP/2 window (64 KiB) plus the stream's buffer: the direct path must fall back
    // to connect, which waits for the drain; the watcher's queue (1000) holds the rest meanwhile.
    const EVENTS = 150;
    const slow = rawGrpcWatcher("paused raw reader", t.app.url);
    const steady = connectWatcher("exported client", createSessionClient(t.app.url));
    const watchers = [slow, steady];
    try {
      await until("the snapshots", watchers, () => watchers.every((w) => w.items.length >= 5));
      await until("both registered", watchers, () => t.app.events.subscriberCount === 2);
      const snapshotEnd = steady.items[4]?.cursor ?? "";
      slow.stream.pause();
      let last = "";
      for (let i = 0; i < EVENTS; i++) {
        const { session } = await t.writer.createSession({ userId: "bp", dataSource: "d", metadata: { step: i, pad: PAD } });
        last = session?.sessionId ?? "";
      }
      await until("the steady watcher has every event", watchers, () => steady.items.filter(isLive).length === EVENTS);
      assert.ok(slow.items.filter(isLive).length < EVENTS, "the paused reader is behind");
      slow.stream.resume();
      await until("the paused reader has caught up", watchers, () => slow.items.filter(isLive).length >= EVENTS);
      await sleep(30);
      const expected = await replay(t.writer, snapshotEnd, EVENTS);
      assert.equal(expected.at(-1)?.sessionId, last);
      for (const w of watchers) {
        assert.equal(w.failure, undefined, `${w.name} failed`);
        assert.deepEqual(w.items.filter(isLive), expected, `${w.name}: every event, in log order`);
        assertHeartbeatsInOrder(w, 4);
      }
    } finally {
      for (const w of watchers) w.close();
    }
  });
});

describe("direct watch writes, a watcher that falls too far behind", () => {
  const t = useSeededApp(() => ({ env: { WATCH_HEARTBEAT: "10ms", WATCH_QUEUE_LIMIT: "20" } }));

  it("ends with RESOURCE_EXHAUSTED and the cursor of the last event it received", async () => {
    const slow = rawGrpcWatcher("paused raw reader", t.app.url);
    try {
      await until("the snapshot", [slow], () => slow.items.length >= 5);
      await until("registered", [slow], () => t.app.events.subscriberCount === 1);
      slow.stream.pause();
      for (let i = 0; i < 150; i++) await t.writer.createSession({ userId: "bp", dataSource: "d", metadata: { step: i, pad: PAD } });
      slow.stream.resume();
      const trailers = await slow.trailers;
      assert.equal(trailers["grpc-status"], "8", `RESOURCE_EXHAUSTED, got ${String(trailers["grpc-message"])}`);
      const received = slow.items.filter(isLive);
      assert.ok(received.length > 0 && received.length < 150, `some events, not all (${received.length})`);
      assert.equal(trailers["watch-cursor"], slow.items.at(-1)?.cursor, "the trailer names the last cursor received");
      const expected = await replay(t.writer, slow.items[4]?.cursor ?? "", received.length);
      assert.deepEqual(received, expected, "no gap, no duplicate, log order");
    } finally {
      slow.close();
    }
  });
});

describe("direct watch writes next to connect's path (RedisStore)", () => {
  const redis = useRedisServer();
  const t = useSeededApp(() => ({ redisUrl: redis.url, env: { WATCH_HEARTBEAT: "10ms" } }));

  it("gRPC, grpc-js with gzip, Connect JSON and a raw reader agree on every event", async () => {
    const raw = rawGrpcWatcher("raw gRPC h2 (gzip offered)", t.app.url);
    const watchers: Watcher[] = [
      connectWatcher("exported client (gRPC h2)", createSessionClient(t.app.url)),
      grpcJsWatcher("grpc-js gzip", `127.0.0.1:${t.app.port}`, { "grpc.default_compression_algorithm": 2 }),
      connectWatcher("Connect JSON h1", createClient(SessionService, createConnectTransport({ baseUrl: t.app.url, httpVersion: "1.1" }))),
      readerWatcher("WatchReader", t.app.url),
      raw,
    ];
    await runBurst(t.app, watchers, t.writer, 120);
    assert.ok(raw.counts.largeUncompressed > 0, "the direct path carried large live events, flagged uncompressed");
  });
});
