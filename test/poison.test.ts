/**
 * One bad entry in Redis costs only what it concerns: an event-log entry that
 * does not decode (a raw XADD, a tampered field) or whose metadata does not
 * decrypt is skipped with one error log line and a metric, the watchers of
 * that very session end with INTERNAL (and a cursor that resumes past it),
 * every other watcher keeps receiving; a tampered record is left out of
 * listings; an event reader that cannot advance turns health NOT_SERVING.
 * Real app on a private redis-server, generated Connect client, raw ioredis as
 * the hostile writer.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import type { App } from "../src/app.js";
import { Code, ConnectError, createSessionClient, EventType, WATCH_CURSOR_METADATA, type SessionClient, type SessionEvent } from "@sessiond/client";
import { useRedisServer } from "./support/redis-server.js";
import { captureLogs, startTestApp, waitForWatchers } from "./support/server.js";
import { PACKED_FIELD, PACKED_ORDER, PACKED_SEPARATOR } from "../src/store/redis/event-codec.js";
import { entryFields } from "./support/event-entries.js";

const redis = useRedisServer();

interface Watch {
  readonly events: SessionEvent[];
  readonly ended: Promise<ConnectError | undefined>;
  stop(): void;
}

function watch(client: SessionClient, request: Parameters<SessionClient["watchSessions"]>[0]): Watch {
  const controller = new AbortController();
  const events: SessionEvent[] = [];
  const ended = (async () => {
    try {
      for await (const res of client.watchSessions(request, { signal: controller.signal, timeoutMs: 60_000 })) {
        if (res.event !== undefined && res.event.type !== EventType.HEARTBEAT) events.push(res.event);
      }
      return undefined;
    } catch (error) {
      return controller.signal.aborted ? undefined : ConnectError.from(error);
    }
  })();
  return { events, ended, stop: () => controller.abort() };
}

async function until(condition: () => boolean, what = "condition", timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`${what}: not reached in time`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metric(app: App, line: string): Promise<number> {
  const text = await (await fetch(`${app.url}/metrics`)).text();
  const found = text.split("\n").find((l) => l.startsWith(line + " "));
  return found === undefined ? 0 : Number(found.slice(line.length + 1));
}

/** The newest log entry of a session, its fields by name (test/support/event-entries.ts), to forge variants of it. */
async function lastEntryOf(prefix: string, sessionId: string): Promise<Map<string, string>> {
  const entries = (await redis.raw.xrevrange(`${prefix}ev`, "+", "-", "COUNT", 50)) as [string, string[]][];
  for (const [, fields] of entries) {
    assert.equal(fields[0], PACKED_FIELD, "the writer packs its entries");
    const named = entryFields(fields);
    if (named.get("i") === sessionId) return named;
  }
  assert.fail("the session has a logged event");
}

/** The entry with one value changed, packed as the writer packs it. */
function withField(fields: ReadonlyMap<string, string>, name: string, value: string): string[] {
  const changed = new Map(fields).set(name, value);
  return [PACKED_FIELD, PACKED_ORDER.map((n) => changed.get(n) ?? "").join(PACKED_SEPARATOR), "g", changed.get("g") ?? ""];
}

describe("poison-proof event path and listings (Redis)", () => {
  const prefix = `p${randomUUID().slice(0, 8)}:`;
  let app: App;
  let client: SessionClient;
  const logs = captureLogs("info");
  before(async () => {
    app = await startTestApp({ redisUrl: redis.url, logger: logs.logger, env: { KEY_PREFIX: prefix, WATCH_HEARTBEAT: "200ms" } });
    client = createSessionClient(app.url, { timeoutMs: 5000 });
  });
  after(() => app.close());

  test("an entry missing its fields is skipped: the reader goes on, every watcher still gets later events", async () => {
    const s = (await client.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
    const before = app.events.subscriberCount;
    const all = watch(client, {});
    const one = watch(client, { sessionIds: [s] });
    await waitForWatchers(app, before + 2);
    const counted = await metric(app, 'sessiond_unreadable_entries_total{kind="event"}');
    await redis.raw.xadd(`${prefix}ev`, "*", "k", "updated");
    await client.updateSession({ sessionId: s, metadata: { n: 1 } });
    await until(() => all.events.some((e) => e.type === EventType.UPDATED) && one.events.some((e) => e.type === EventType.UPDATED));
    assert.equal(await metric(app, 'sessiond_unreadable_entries_total{kind="event"}'), counted + 1);
    const lines = logs.lines().filter((l) => l["msg"] === "unreadable event skipped");
    assert.equal(lines.length, 1, "one error line");
    assert.equal(lines[0]?.["level"], 50);
    all.stop();
    one.stop();
    assert.equal(await all.ended, undefined);
    assert.equal(await one.ended, undefined);
  });

  test("a tampered event of one session: INTERNAL to that session's watchers only, resumable past it", async () => {
    const bad = (await client.createSession({ userId: "u", dataSource: "d", metadata: { secret: "x" } })).session?.sessionId ?? "";
    const other = (await client.createSession({ userId: "u", dataSource: "d" })).session?.sessionId ?? "";
    const before = app.events.subscriberCount;
    const all = watch(client, {});
    const ofBad = watch(client, { sessionIds: [bad] });
    const ofOther = watch(client, { sessionIds: [other] });
    await waitForWatchers(app, before + 3);
    const fields = await lastEntryOf(prefix, bad);
    // A version that is no number (does not decode), then metadata that does not decrypt.
    await redis.raw.xadd(`${prefix}ev`, "*", ...withField(fields, "v", "NaN"));
    const error = await ofBad.ended;
    assert.equal(error?.code, Code.Internal, String(error));
    assert.doesNotMatch(error?.rawMessage ?? "", /secret/);
    const cursor = error?.metadata.get(WATCH_CURSOR_METADATA) ?? "";

    const ofBad2 = watch(client, { sessionIds: [bad] });
    await until(() => app.events.subscriberCount === before + 3, "second watcher registered");
    await redis.raw.xadd(`${prefix}ev`, "*", ...withField(fields, "m", "e1:test:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    assert.equal((await ofBad2.ended)?.code, Code.Internal);

    await client.updateSession({ sessionId: other, metadata: { n: 2 } });
    await client.updateSession({ sessionId: bad, metadata: { n: 3 } });
    await until(() => ofOther.events.some((e) => e.type === EventType.UPDATED), "other's watcher got its update");
    await until(() => all.events.filter((e) => e.type === EventType.UPDATED).length >= 2, "tenant watcher got both updates");
    assert.deepEqual(
      all.events.filter((e) => e.type === EventType.UPDATED).map((e) => e.session?.sessionId),
      [other, bad],
      "the tenant-wide watcher skipped both bad entries and got every good event",
    );
    // Resuming from the cursor the INTERNAL carried replays the good events and skips the bad ones.
    if (cursor !== "") {
      const resumed = watch(client, { sessionIds: [bad], resumeCursor: cursor });
      await until(() => resumed.events.some((e) => e.type === EventType.UPDATED), "resumed watcher got the update");
      resumed.stop();
      assert.equal(await resumed.ended, undefined);
    }
    assert.ok(await metric(app, 'sessiond_unreadable_entries_total{kind="event_metadata"}') >= 1);
    for (const w of [all, ofOther]) w.stop();
    assert.equal(await all.ended, undefined);
    assert.equal(await ofOther.ended, undefined);
    assert.ok(!logs.text().includes("secret"));
  });

  test("a tampered record is left out of listings (and counted); the rest of the tenant's sessions are listed", async () => {
    const source = `src-${randomUUID()}`;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push((await client.createSession({ userId: "lister", dataSource: source })).session?.sessionId ?? "");
    const [metaBad, versionBad] = ids;
    const recordKey = async (sid: string): Promise<string> => {
      const keys = await redis.raw.keys(`${prefix}*{${sid}}`);
      assert.equal(keys.length, 1);
      return keys[0] as string;
    };
    await redis.raw.hset(await recordKey(metaBad ?? ""), "m", "e1:test:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    await redis.raw.hset(await recordKey(versionBad ?? ""), "v", "not-a-number");
    const counted = await metric(app, 'sessiond_unreadable_entries_total{kind="record"}');
    for (const filter of [{ dataSource: source }, { userId: "lister" }, {}]) {
      const listed = (await client.listSessions({ ...filter, pageSize: 1000 })).sessions.map((s) => s.sessionId);
      assert.ok(!listed.includes(metaBad ?? "") && !listed.includes(versionBad ?? ""), JSON.stringify(filter));
      for (const good of ids.slice(2)) assert.ok(listed.includes(good), JSON.stringify(filter));
    }
    // Paging with page size 1 walks past the bad records too.
    const paged: string[] = [];
    let token = "";
    for (let i = 0; i < 10; i++) {
      const page = await client.listSessions({ dataSource: source, pageSize: 1, pageToken: token });
      paged.push(...page.sessions.map((s) => s.sessionId));
      token = page.nextPageToken;
      if (token === "") break;
    }
    assert.deepEqual(paged.sort(), ids.slice(2).sort());
    assert.ok((await metric(app, 'sessiond_unreadable_entries_total{kind="record"}')) >= counted + 2);
    // A direct read of the tampered session is INTERNAL for that session alone.
    await assert.rejects(client.getSession({ sessionId: metaBad ?? "" }), (e: unknown) => ConnectError.from(e).code === Code.Internal);
  });
});

describe("an event reader that cannot advance turns health NOT_SERVING", () => {
  test("the event log key replaced by a string: NOT_SERVING while the store answers; SERVING once it is back", async () => {
    const prefix = `h${randomUUID().slice(0, 8)}:`;
    const app = await startTestApp({ redisUrl: redis.url, env: { KEY_PREFIX: prefix } });
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: app.url }));
      const status = async (): Promise<HealthCheckResponse_ServingStatus> => (await health.check({ service: "" })).status;
      assert.equal(await status(), HealthCheckResponse_ServingStatus.SERVING);
      await redis.raw.del(`${prefix}ev`);
      await redis.raw.set(`${prefix}ev`, "not a stream");
      const deadline = Date.now() + 20_000;
      while ((await status()) !== HealthCheckResponse_ServingStatus.NOT_SERVING) {
        if (Date.now() > deadline) assert.fail("still SERVING with a reader that cannot read");
        await new Promise((r) => setTimeout(r, 200));
      }
      const ready = await fetch(`${app.url}/readyz`);
      assert.equal(ready.status, 503);
      assert.match(await ready.text(), /event reader (stalled|not reading)/);
      await redis.raw.del(`${prefix}ev`);
      while ((await status()) !== HealthCheckResponse_ServingStatus.SERVING) {
        if (Date.now() > deadline + 20_000) assert.fail("did not recover");
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await app.close();
    }
  });
});
