/**
 * The event log's entry forms (event-codec.ts): emit() writes the packed form
 * (the values in one field), which reads exactly as the same entry in the
 * named form of earlier versions (one field per value), through every reader
 * of the log (readEvents' script and the event tail's XREAD); a packed entry
 * with the wrong number of values is reported with the tenant and session it
 * names, and skipped. The tail's readEntries decodes a packed entry as far as
 * its head until its event is asked for, and the event hub asks only for the
 * entries of tenants watched in its process. RedisStore on a private
 * redis-server; the copies are written with XADD.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { EventHead, StoredEvent } from "../src/store/store.js";
import { EventHub } from "../src/streaming/event-hub.js";
import type { UnreadableEntry } from "../src/store/unreadable.js";
import { eventLogKey } from "../src/store/redis/keys.js";
import { PACKED_FIELD, PACKED_ORDER, PACKED_SEPARATOR } from "../src/store/redis/event-codec.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { useRedisServer } from "./support/redis-server.js";
import { entryFields } from "./support/event-entries.js";

const PREFIX = "packed:";
const TENANT = "tenant p";

const server = useRedisServer();

/** The fields of the log entry `id`, by name; the writer's entries are packed. */
async function namedFields(id: string): Promise<Map<string, string>> {
  const [entry] = (await server.raw.xrange(eventLogKey(PREFIX), id, id)) as [string, string[]][];
  assert.ok(entry !== undefined, "the entry is in the log");
  assert.equal(entry[1][0], PACKED_FIELD, "emit() writes the packed form");
  return entryFields(entry[1]);
}

/** Appends the entry in the named form of earlier versions; its id. */
async function appendNamed(fields: ReadonlyMap<string, string>): Promise<string> {
  const id = await server.raw.xadd(eventLogKey(PREFIX), "*", ...[...fields].flat());
  assert.ok(id !== null);
  return id;
}

/** Appends the entry in the packed form (values in PACKED_ORDER, then the generation); its id. */
async function appendPacked(values: readonly string[], generation: string): Promise<string> {
  const id = await server.raw.xadd(eventLogKey(PREFIX), "*", PACKED_FIELD, values.join(PACKED_SEPARATOR), "g", generation);
  assert.ok(id !== null);
  return id;
}

/** The event without what differs between two entries of the same values (their ids). */
function content(event: StoredEvent): Omit<StoredEvent, "id" | "time"> {
  const { id: _id, time: _time, ...rest } = event;
  return rest;
}

/** An empty Redis and a store on it, with the unreadable entries it reports; `dispose` stops listening and closes it. */
async function freshStore(): Promise<{ store: RedisStore; reported: UnreadableEntry[]; dispose: () => Promise<void> }> {
  await server.raw.flushall();
  const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits: { maxDataKeys: 64, archiveRetentionMs: 30_000, expiryGraceMs: 30_000 }, commandTimeoutMs: 2000 });
  const reported: UnreadableEntry[] = [];
  const stopListening = store.onUnreadableEvent((entry) => reported.push(entry));
  return {
    store,
    reported,
    dispose: async () => {
      stopListening();
      await store.dispose();
    },
  };
}

describe("packed event log entries", () => {
  it("emit()'s packed entries read as the same entries in the named form, through readEvents and the event tail", async () => {
    await server.raw.flushall();
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits: { maxDataKeys: 64, archiveRetentionMs: 30_000, expiryGraceMs: 30_000 }, commandTimeoutMs: 2000 });
    const tail = store.openEventTail();
    try {
      const start = await store.lastEventId();
      const sealed = { user: "e1:k1:sealed-user", dataSource: "e1:k1:sealed-source", metadataTag: "tag-1" };
      const { session } = await store.create({ tenant: TENANT, userId: "user-1", dataSource: "source-1", accessLevel: "write", ttlMs: 60_000, metadata: '{"a":"b\\u001fc","n":1}', requestId: "", sealed });
      await store.setData(TENANT, session.sessionId, "key-1", '"v"');
      const written = await store.readEvents(start, 10);
      assert.deepEqual(
        written.map((e) => e.type),
        ["created", "data_changed"],
      );
      const copies: string[] = [];
      for (const event of written) copies.push(await appendNamed(await namedFields(event.id)));
      const last = written.at(-1)?.id ?? start;
      const named = await store.readEvents(last, 10);
      assert.deepEqual(
        named.map((e) => e.id),
        copies,
      );
      assert.deepEqual(named.map(content), written.map(content));
      assert.deepEqual(written[1]?.dataKeys, ["key-1"]);
      const tailed = await tail.read(start, 10, 1);
      assert.deepEqual(tailed, [...written, ...named]);
    } finally {
      tail.close();
      await store.dispose();
    }
  });

  it("a create's event carries the session the create answered, sealed or not, alone or in a batch", async () => {
    await server.raw.flushall();
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits: { maxDataKeys: 64, archiveRetentionMs: 30_000, expiryGraceMs: 30_000 }, commandTimeoutMs: 2000 });
    try {
      const start = await store.lastEventId();
      const input = (i: number) => ({
        tenant: TENANT,
        userId: `user-${i}`,
        dataSource: `source-${i % 2}`,
        accessLevel: i % 3 === 0 ? "read" : "admin",
        ttlMs: 60_000 + i,
        metadata: `{"n":${i}}`,
        requestId: i === 2 ? "request-2" : "",
        ...(i % 2 === 0 ? {} : { sealed: { user: `e1:k1:user-${i}`, dataSource: "e1:k1:source-1", metadataTag: `tag-${i}` } }),
      }) as const;
      const alone = await store.create(input(0));
      const batch = await Promise.all([1, 2, 3, 4].map((i) => store.create(input(i))));
      // Events never carry the metadata tag (emit in lua/prelude.ts).
      const sessions = [alone, ...batch].map(({ session }) => {
        if (session.sealed === undefined) return session;
        const { metadataTag: _tag, ...sealed } = session.sealed;
        return { ...session, sealed };
      });
      const events = await store.readEvents(start, 10);
      assert.deepEqual(events.map((e) => e.type), Array(5).fill("created"));
      assert.deepEqual(events.map((e) => e.session), sessions);
      assert.deepEqual(events.map((e) => e.dataKeys), Array(5).fill([]));
    } finally {
      await store.dispose();
    }
  });

  it("a packed entry with the wrong number of values is reported with its session and skipped", async () => {
    const { store, reported, dispose } = await freshStore();
    const tail = store.openEventTail();
    try {
      const start = await store.lastEventId();
      const { session } = await store.create({ tenant: TENANT, userId: "user-1", dataSource: "source-1", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" });
      const [created] = await store.readEvents(start, 10);
      assert.ok(created !== undefined);
      const fields = await namedFields(created.id);
      const values = PACKED_ORDER.map((name) => fields.get(name) ?? "");
      const bad = await appendPacked(values.slice(0, -1), fields.get("g") ?? "");
      const good = await appendPacked(values, fields.get("g") ?? "");
      const read = await store.readEvents(created.id, 10);
      assert.deepEqual(
        read.map((e) => e.id),
        [good],
      );
      assert.equal(reported.length, 1);
      assert.equal(reported[0]?.id, bad);
      assert.equal(reported[0]?.tenant, TENANT);
      assert.equal(reported[0]?.sessionId, session.sessionId);
      const tailed = await tail.read(created.id, 10, 1);
      assert.deepEqual(
        tailed.map((e) => e.id),
        [good],
      );
    } finally {
      tail.close();
      await dispose();
    }
  });

  it("readEntries: each entry's head as its whole event reads; a body that does not decode is reported only when its event is asked for", async () => {
    const { store, reported, dispose } = await freshStore();
    const tail = store.openEventTail();
    try {
      assert.ok(tail.readEntries !== undefined, "the single log's tail reads entries");
      const start = await store.lastEventId();
      const { session } = await store.create({ tenant: TENANT, userId: "user-1", dataSource: "source-1", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      await store.extend(TENANT, session.sessionId, 120_000);
      await store.setData(TENANT, session.sessionId, "key-1", '"v"');
      await store.close(TENANT, session.sessionId);
      const written = await store.readEvents(start, 10);
      const fields = await namedFields(written[0]?.id ?? "");
      const named = await appendNamed(fields);
      // The head's values read, the version does not: only the whole event fails.
      const values = PACKED_ORDER.map((name) => (name === "v" ? "NaN" : (fields.get(name) ?? "")));
      const bad = await appendPacked(values, fields.get("g") ?? "");
      const whole = await store.readEvents(start, 10);
      // readEvents decodes whole: it reported the bad entry already.
      reported.length = 0;

      const entries = await tail.readEntries(start, 10, 1);
      const head = ({ id, type, tenant, sessionId, expireTime }: EventHead): EventHead => ({ id, type, tenant, sessionId, expireTime });
      const headOf = (e: StoredEvent): EventHead => ({ id: e.id, type: e.type, tenant: e.session.tenant, sessionId: e.session.sessionId, expireTime: e.session.expireTime });
      assert.deepEqual(
        entries.map(head),
        [...whole.map(headOf), { id: bad, type: "created", tenant: TENANT, sessionId: session.sessionId, expireTime: Number(fields.get("e")) }],
      );
      assert.deepEqual(
        whole.map((e) => e.type),
        ["created", "extended", "data_changed", "closed", "created"],
      );
      assert.equal(whole.at(-1)?.id, named);
      assert.equal(reported.length, 0, "nothing reported before an event is asked for");
      assert.deepEqual(
        entries.slice(0, -1).map((e) => e.event()),
        whole,
      );
      assert.equal(entries.at(-1)?.event(), undefined);
      assert.deepEqual(
        reported.map((r) => [r.id, r.tenant, r.sessionId]),
        [[bad, TENANT, session.sessionId]],
      );
    } finally {
      tail.close();
      await dispose();
    }
  });

  it("the event hub: its listeners hear every entry's head; only a watched tenant's entries are decoded whole", async () => {
    const { store, reported, dispose } = await freshStore();
    const hub = new EventHub({ store, blockMs: 50 });
    const heard: EventHead[] = [];
    const stopHearing = hub.addListener((event) => heard.push(event));
    await hub.start();
    try {
      const input = (tenant: string) => ({ tenant, userId: "user-1", dataSource: "source-1", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" }) as const;
      const watched = hub.subscribe("watched", () => true, 100);
      const quiet = (await store.create(input(TENANT))).session;
      const seen = (await store.create(input("watched"))).session;
      const created = await store.readEvents("0-0", 10);
      const badOf = async (event: StoredEvent | undefined): Promise<string> => {
        const fields = await namedFields(event?.id ?? "");
        return appendPacked(
          PACKED_ORDER.map((name) => (name === "v" ? "NaN" : (fields.get(name) ?? ""))),
          fields.get("g") ?? "",
        );
      };
      const badQuiet = await badOf(created[0]);
      const badWatched = await badOf(created[1]);
      const last = (await store.create(input("watched"))).session;
      await until(() => hub.position === (heard.at(-1)?.id ?? "") && heard.length === 5);
      assert.deepEqual(
        heard.map((e) => [e.tenant, e.sessionId, e.type, e.expireTime]),
        [quiet, seen, quiet, seen, last].map((s) => [s.tenant, s.sessionId, "created", s.expireTime]),
      );
      assert.deepEqual(
        reported.map((r) => r.id),
        [badWatched],
        "the unwatched tenant's bad entry is never decoded",
      );
      const got: string[] = [];
      for (let e = watched.queue.shift(); e !== undefined; e = watched.queue.shift()) got.push(e.session.sessionId);
      assert.deepEqual(got, [seen.sessionId, last.sessionId]);
      assert.equal(hub.tenantPosition(TENANT), badQuiet);
      watched.close();
    } finally {
      stopHearing();
      await hub.stop();
      await dispose();
    }
  });
});

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail("timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
