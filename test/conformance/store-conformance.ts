/**
 * The store conformance suite: the storage contract of src/store/store.ts (and
 * the semantics note it implements) written as assertions, run unchanged
 * against every SessionStore backend (test/store-memory.test.ts,
 * test/store-redis.test.ts). A backend is correct when this suite passes; the
 * two backends agree because they pass the same suite.
 *
 * `open` is called before EVERY test and must hand back an empty store built
 * with CONFORMANCE_LIMITS (for Redis: a shared server per test file, flushed per
 * test); `cleanup` is called after every test and must release the store.
 *
 * Expiry cases use TTLs of a few hundred milliseconds and sleep just past them,
 * so the whole suite stays within a few seconds per backend. Times are compared
 * with the test's own clock only with a generous slack (the store's clock is
 * Redis TIME on the same machine), so those checks catch unit mistakes, not speed.
 */
import { describe, it, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError, type SessionErrorKind } from "../../src/domain/errors.js";
import type { SessionRecord } from "../../src/domain/model.js";
import { compareEventIds } from "../../src/store/event-id.js";
import { EVENT_LOG_RESET_MESSAGE } from "../../src/store/store.js";
import type {
  CreateSessionInput,
  StoredEvent,
  ListCursor,
  ListFilter,
  SessionCounters,
  SessionStore,
  StoreLimits,
} from "../../src/store/store.js";

/** The limits every backend under test is built with (small, so limits are cheap to reach). */
export const CONFORMANCE_LIMITS: StoreLimits = Object.freeze({
  maxDataKeys: 5,
  archiveRetentionMs: 60_000,
  expiryGraceMs: 60_000,
  /** Small, so that the retention cases can outgrow it (Redis trims whole stream nodes of 100 entries). */
  eventRetentionCount: 50,
});

export interface OpenedStore {
  readonly store: SessionStore;
  cleanup(): Promise<void>;
}

/** Asserts that `promise` rejects with a SessionError of the given kind. */
export async function assertRejectsKind(
  promise: Promise<unknown>,
  kind: SessionErrorKind,
  message?: string,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof SessionError, `${message ?? "rejection"}: expected a SessionError, got ${String(err)}`);
    assert.equal(err.kind, kind, `${message ?? "rejection"}: error kind`);
    return true;
  });
}

/** Lowercase UUID v4 as produced by crypto.randomUUID(). */
export const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const A = "tenant-a";
const B = "tenant-b";
/** Long enough that no fixture expires during a test. */
const LONG_TTL = 600_000;
/** Short TTL for expiry cases. */
const SHORT_TTL = 300;
/** Sleep this long after creating a SHORT_TTL session to be past its expiry. */
const PAST_SHORT = SHORT_TTL + 80;
/** Allowed difference between the store's clock and the test's clock. */
const CLOCK_SLACK_MS = 250;
/** A pause long enough for the store clock to advance by at least one millisecond. */
const TICK = 15;

const NO_TOUCH = { touch: false, includeEnded: false } as const;
const ENDED = { touch: false, includeEnded: true } as const;

function assertBetween(value: number, lo: number, hi: number, what: string): void {
  assert.ok(value >= lo && value <= hi, `${what}: ${value} not in [${lo}, ${hi}]`);
}

function compareListOrder(a: SessionRecord, b: SessionRecord): number {
  if (a.expireTime !== b.expireTime) return a.expireTime - b.expireTime;
  return a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0;
}

function ids(records: readonly SessionRecord[]): string[] {
  return records.map((r) => r.sessionId);
}

function sortedIds(records: readonly SessionRecord[]): string[] {
  return ids(records).sort();
}

function zeroCounters(): SessionCounters {
  return {
    total: 0,
    active: 0,
    expired: 0,
    closed: 0,
    activeByAccessLevel: {},
    activeByDataSource: {},
    endedDurationMsSum: 0,
  };
}

function fulfilled<T>(results: PromiseSettledResult<T>[]): T[] {
  return results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
}

function rejectionKinds(results: PromiseSettledResult<unknown>[]): string[] {
  return results.flatMap((r) => {
    if (r.status === "fulfilled") return [];
    const e: unknown = r.reason;
    return [e instanceof SessionError ? e.kind : `not a SessionError: ${String(e)}`];
  });
}

export function runStoreConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(`SessionStore conformance: ${name}`, () => {
    let opened: OpenedStore | undefined;
    let store: SessionStore;

    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });

    afterEach(async () => {
      const o = opened;
      opened = undefined;
      if (o) await o.cleanup();
    });

    function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
      return {
        tenant: A,
        userId: "user-1",
        dataSource: "source-1",
        accessLevel: "write",
        ttlMs: LONG_TTL,
        metadata: '{"team":"blue"}',
        requestId: "",
        ...overrides,
      };
    }

    async function create(overrides: Partial<CreateSessionInput> = {}): Promise<SessionRecord> {
      const result = await store.create(input(overrides));
      assert.equal(result.created, true);
      return result.session;
    }

    async function read(tenant: string, sessionId: string): Promise<SessionRecord> {
      return store.get(tenant, sessionId, NO_TOUCH);
    }

    async function listAll(tenant: string, filter: ListFilter = {}): Promise<SessionRecord[]> {
      const page = await store.list(tenant, filter, 1000);
      assert.equal(page.next, undefined, "one page of 1000 holds every session of a test");
      return page.sessions;
    }

    /** Pages through a listing with `limit`, checking the page invariants on the way. */
    async function listPaged(tenant: string, filter: ListFilter, limit: number): Promise<SessionRecord[]> {
      const all: SessionRecord[] = [];
      let after: ListCursor | undefined;
      for (let pageNo = 0; pageNo < 1000; pageNo++) {
        const page = await store.list(tenant, filter, limit, after);
        assert.ok(page.sessions.length <= limit, `page ${pageNo} holds at most ${limit}`);
        all.push(...page.sessions);
        if (page.next === undefined) return all;
        assert.equal(page.sessions.length, limit, `a page with a next cursor is full (page ${pageNo})`);
        const last = page.sessions[page.sessions.length - 1];
        assert.ok(last, "a page with a next cursor is not empty");
        assert.deepEqual(page.next, { expireTime: last.expireTime, sessionId: last.sessionId });
        after = page.next;
      }
      assert.fail("paging did not end");
    }

    async function assertAllDataOps(tenant: string, sessionId: string, kind: SessionErrorKind, why: string): Promise<void> {
      await assertRejectsKind(store.setData(tenant, sessionId, "k", '"v"'), kind, `${why}: setData`);
      await assertRejectsKind(store.getData(tenant, sessionId, "k"), kind, `${why}: getData`);
      await assertRejectsKind(store.deleteData(tenant, sessionId, "k"), kind, `${why}: deleteData`);
      await assertRejectsKind(store.listData(tenant, sessionId, true), kind, `${why}: listData`);
      await assertRejectsKind(store.clearData(tenant, sessionId), kind, `${why}: clearData`);
    }

    // ------------------------------------------------------------------ basics

    it("reports a kind and answers ping", async () => {
      assert.equal(typeof store.kind, "string");
      assert.ok(store.kind.length > 0);
      await store.ping();
    });


    // ------------------------------------------------------------------ event log

    describe("event log (watch)", () => {
      async function logged(): Promise<StoredEvent[]> {
        return store.readEvents("0-0", 10_000);
      }
      function summary(events: readonly StoredEvent[]): string[] {
        return events.map((e) => `${e.type}:v${e.session.version}`);
      }

      it("logs one event per write, in order, with the session after it and without data values", async () => {
        const start = await store.lastEventId();
        assert.match(start, /^[1-9]\d*-0$/, "an empty log's position is the start of its generation, never 0-0");
        assert.deepEqual(await store.readEvents(start, 10), []);
        assert.deepEqual(await logged(), []);
        const before = Date.now();
        const s = await create({ metadata: '{"m":1}' });
        await store.get(A, s.sessionId, { touch: true, includeEnded: false });
        await store.update(A, s.sessionId, { metadata: '{"m":2}' });
        await assertRejectsKind(store.update(A, s.sessionId, { metadata: "{}" }, 1), "version_mismatch");
        await store.extend(A, s.sessionId, LONG_TTL * 2);
        await store.setData(A, s.sessionId, "zeta", '"SECRET-VALUE"');
        await store.setData(A, s.sessionId, "alpha", "1");
        await store.deleteData(A, s.sessionId, "zeta");
        await store.clearData(A, s.sessionId);
        const closed = await store.close(A, s.sessionId);
        await assertRejectsKind(store.close(A, s.sessionId), "ended");

        const events = await logged();
        assert.deepEqual(summary(events), [
          "created:v1", "updated:v2", "extended:v3", "data_changed:v4", "data_changed:v5", "data_changed:v6", "data_changed:v7", "closed:v8",
        ], "reads and failed writes log nothing");
        assert.deepEqual(events.map((e) => e.dataKeys), [[], [], [], ["zeta"], ["alpha"], ["zeta"], ["alpha"], []]);
        const ids = events.map((e) => e.id);
        assert.deepEqual([...ids].sort(compareEventIds), ids, "ids increase");
        assert.equal(new Set(ids).size, ids.length, "ids are unique");
        assert.equal(await store.lastEventId(), ids.at(-1));
        for (const e of events) {
          assert.equal(e.session.tenant, A);
          assertBetween(e.time, before - CLOCK_SLACK_MS, Date.now() + CLOCK_SLACK_MS, "event time");
        }
        assert.equal(events[1]?.session.metadata, '{"m":2}');
        assert.equal(events[0]?.session.status, "active");
        assert.deepEqual(events.at(-1)?.session, closed, "the closed event carries the archived record");
        assert.ok(!JSON.stringify(events).includes("SECRET-VALUE"), "no data value in the log");
      });

      it("a session that a method meets after its expire time logs EXPIRED with its last metadata", async () => {
        const s = await create({ ttlMs: SHORT_TTL, metadata: '{"last":"state"}' });
        await store.update(A, s.sessionId, { metadata: '{"last":"metadata"}' });
        await sleep(PAST_SHORT);
        await assertRejectsKind(store.extend(A, s.sessionId, LONG_TTL), "ended");
        await assertRejectsKind(store.setData(A, s.sessionId, "k", "1"), "not_found");
        assert.deepEqual(await store.expireDue(10), [], "already expired, exactly once");
        const events = await logged();
        assert.deepEqual(summary(events), ["created:v1", "updated:v2", "expired:v3"]);
        const expired = events[2]?.session;
        assert.equal(expired?.status, "expired");
        assert.equal(expired?.metadata, '{"last":"metadata"}');
        assert.equal(expired?.endTime, expired?.expireTime);
        assert.deepEqual(expired, await store.get(A, s.sessionId, ENDED), "the event carries the archive");
      });

      it("expireDue from several callers logs exactly one EXPIRED per session", async () => {
        const ids = new Set<string>();
        for (let i = 0; i < 12; i++) ids.add((await create({ ttlMs: SHORT_TTL, dataSource: `src-${i % 3}`, userId: `u-${i % 4}` })).sessionId);
        await sleep(PAST_SHORT);
        const batches = await Promise.all([store.expireDue(5), store.expireDue(5), store.expireDue(5), store.expireDue(5)]);
        assert.equal(batches.flat().length, 12);
        const expired = (await logged()).filter((e) => e.type === "expired");
        assert.equal(expired.length, 12);
        assert.deepEqual(new Set(expired.map((e) => e.session.sessionId)), ids);
      });

      it("Extend and Close racing expiry have one winner, and the log tells which", async () => {
        const sessions: SessionRecord[] = [];
        for (let i = 0; i < 16; i++) sessions.push(await create({ ttlMs: SHORT_TTL }));
        await sleep(SHORT_TTL - 30);
        const outcomes = await Promise.allSettled(
          sessions.map(async (s, i) => {
            await sleep(i * 4);
            if (i % 3 === 0) await store.expireDue(100);
            return i % 2 === 0 ? store.extend(A, s.sessionId, LONG_TTL) : store.close(A, s.sessionId);
          }),
        );
        await sleep(60);
        await store.expireDue(100);
        const events = await logged();
        let won = 0;
        sessions.forEach((s, i) => {
          const mine = events.filter((e) => e.session.sessionId === s.sessionId).map((e) => e.type);
          const outcome = outcomes[i];
          const op = i % 2 === 0 ? "extended" : "closed";
          if (outcome?.status === "fulfilled") {
            won += 1;
            assert.deepEqual(mine, ["created", op], `session ${i}: the ${op} won, and nothing expired it`);
          } else {
            assert.ok(outcome?.reason instanceof SessionError && outcome.reason.kind === "ended", `session ${i}: lost to expiry`);
            assert.deepEqual(mine, ["created", "expired"], `session ${i}: expiry won, once`);
          }
        });
        assert.ok(won >= 0);
      });

      it("readEvents pages strictly after a cursor; bad cursors are refused", async () => {
        const s = await create();
        for (let i = 0; i < 9; i++) await store.update(A, s.sessionId, { metadata: `{"i":${i}}` });
        const all = await logged();
        assert.equal(all.length, 10);
        const page1 = await store.readEvents("0-0", 4);
        const page2 = await store.readEvents(page1.at(-1)?.id ?? "", 4);
        const page3 = await store.readEvents(page2.at(-1)?.id ?? "", 4);
        assert.deepEqual([...page1, ...page2, ...page3].map((e) => e.id), all.map((e) => e.id));
        assert.deepEqual(await store.readEvents(all.at(-1)?.id ?? "", 4), [], "nothing after the last");
        await assertRejectsKind(store.readEvents("not-a-cursor", 4), "invalid_argument");
        await assertRejectsKind(store.readEvents("12", 4), "invalid_argument");
        const last = all.at(-1)?.id ?? "";
        const future = `${Number(last.split("-")[0]) + 60_000}-0`;
        await assertRejectsKind(store.readEvents(future, 4), "out_of_range", "a cursor the log never reached");
      });

      it("a cursor from before the log's generation (a log the store lost) is out_of_range, saying the log was reset", async () => {
        const start = await store.lastEventId();
        const s = await create();
        const generationMs = Number(start.split("-")[0]);
        const older = `${generationMs - 5000}-3`;
        await assert.rejects(store.readEvents(older, 10), (e: unknown) => {
          assert.ok(e instanceof SessionError && e.kind === "out_of_range", String(e));
          assert.equal(e.message, EVENT_LOG_RESET_MESSAGE);
          return true;
        });
        const events = await store.readEvents(start, 10);
        assert.deepEqual(events.map((e) => e.session.sessionId), [s.sessionId], "the generation's start is a valid cursor");
        assert.ok(Number(events[0]?.id.split("-")[0]) > generationMs, "every event is later than the generation");
        assert.equal((await store.readEvents("0-0", 10)).length, 1, "0-0, the log's start, reads the current generation");
      });

      it("cursors that fell out of the retention are out_of_range; recent ones still resume", async () => {
        const s = await create();
        const first = (await logged())[0]?.id ?? "";
        for (let i = 0; i < 250; i++) await store.update(A, s.sessionId, { metadata: `{"i":${i}}` });
        const mark = await store.lastEventId();
        for (let i = 0; i < 10; i++) await store.update(A, s.sessionId, { metadata: `{"j":${i}}` });
        await assertRejectsKind(store.readEvents(first, 10), "out_of_range");
        await assertRejectsKind(store.readEvents("0-0", 10), "out_of_range", "once anything was dropped, the start is gone");
        // The last eventRetentionCount (50) events are kept: a cursor among them resumes with everything after it.
        const resumed = await store.readEvents(mark, 100);
        assert.deepEqual(resumed.map((e) => e.session.version), Array.from({ length: 10 }, (_, i) => 252 + i));
        assert.deepEqual(await store.readEvents(await store.lastEventId(), 10), []);
      });

      it("a tail read waits for the next event and returns what follows the cursor", async () => {
        const tail = store.openEventTail();
        try {
          const start = await store.lastEventId();
          assert.deepEqual(await tail.read(start, 10, 30), [], "nothing within the block time");
          const pending = tail.read(start, 10, 3000);
          await sleep(20);
          const s = await create();
          const got = await pending;
          assert.equal(got.length, 1);
          assert.equal(got[0]?.type, "created");
          assert.equal(got[0]?.session.sessionId, s.sessionId);
          await store.update(A, s.sessionId, { metadata: "{}" });
          const next = await tail.read(got[0]?.id ?? "", 10, 1000);
          assert.deepEqual(next.map((e) => e.type), ["updated"]);
        } finally {
          tail.close();
        }
      });

      it("nextDue gives the earliest expire time with the store's clock", async () => {
        const none = await store.nextDue();
        assert.equal(none.dueAt, undefined);
        assertBetween(none.now, Date.now() - CLOCK_SLACK_MS, Date.now() + CLOCK_SLACK_MS, "store clock");
        const late = await create({ ttlMs: LONG_TTL, dataSource: "x" });
        const early = await create({ ttlMs: LONG_TTL / 2, dataSource: "y" });
        const due = await store.nextDue();
        assert.ok(due.dueAt !== undefined && due.dueAt <= early.expireTime, "a lower bound of the earliest expiry");
        assert.ok(due.dueAt > due.now, "not due yet");
        assert.ok(late.expireTime > early.expireTime);
      });

      it("waitDue wakes for a session due before the earliest that nextDue gave, and only for one", async () => {
        const never = new AbortController().signal;
        const first = await create({ ttlMs: LONG_TTL, dataSource: "x" });
        const { dueAt } = await store.nextDue();
        assert.ok(dueAt !== undefined && dueAt <= first.expireTime);
        // Later than the head (another data source, an extend past it): no wake-up.
        const later = await create({ ttlMs: LONG_TTL * 2, dataSource: "y" });
        await store.extend(A, later.sessionId, LONG_TTL * 3);
        const started = Date.now();
        assert.equal(await store.waitDue(Date.now() + 300, never), false, "nothing due sooner: the wait ends at until");
        assert.ok(Date.now() - started >= 250, "it waited");
        // Sooner, during the wait: woken.
        const waiting = store.waitDue(Date.now() + 10_000, never);
        await sleep(50);
        const sooner = await create({ ttlMs: LONG_TTL / 2, dataSource: "z" });
        assert.equal(await waiting, true, "a session due sooner wakes the wait");
        // The next look knows it; a write made before the wait starts still ends it at once.
        assert.ok(((await store.nextDue()).dueAt ?? Infinity) <= sooner.expireTime);
        await store.extend(A, first.sessionId, LONG_TTL / 4);
        assert.equal(await store.waitDue(Date.now() + 10_000, never), true, "an extend to before the head, between the look and the wait");
        // An aborted wait ends with false.
        await store.nextDue();
        const abort = new AbortController();
        const aborted = store.waitDue(Date.now() + 10_000, abort.signal);
        abort.abort();
        assert.equal(await aborted, false);
      });
    });

    // ------------------------------------------------------------------ create

    describe("create", () => {
      it("creates an active session: version 1, UUID v4, times from one clock", async () => {
        const before = Date.now();
        const { session, created } = await store.create(
          input({ userId: "alice", dataSource: "warehouse", accessLevel: "admin", ttlMs: 45_000, metadata: '{"k":[1,2]}' }),
        );
        const after = Date.now();
        assert.equal(created, true);
        assert.match(session.sessionId, UUID_V4);
        assert.equal(session.tenant, A);
        assert.equal(session.userId, "alice");
        assert.equal(session.dataSource, "warehouse");
        assert.equal(session.accessLevel, "admin");
        assert.equal(session.metadata, '{"k":[1,2]}');
        assert.equal(session.status, "active");
        assert.equal(session.version, 1);
        assert.equal(session.endTime, 0);
        assert.equal(session.lastAccessTime, session.createTime, "createTime == lastAccessTime");
        assert.equal(session.expireTime - session.createTime, 45_000, "expireTime == createTime + ttlMs");
        assertBetween(session.createTime, before - CLOCK_SLACK_MS, after + CLOCK_SLACK_MS, "createTime (ms since epoch)");
        assert.deepEqual(await read(A, session.sessionId), session, "get returns what create returned");
      });

      it("stores every access level as given", async () => {
        for (const level of ["read", "write", "admin"] as const) {
          const s = await create({ accessLevel: level });
          assert.equal(s.accessLevel, level);
          assert.equal((await read(A, s.sessionId)).accessLevel, level);
        }
      });

      it("gives every session a distinct UUID v4", async () => {
        const sessions = await Promise.all(Array.from({ length: 10 }, () => create()));
        for (const s of sessions) assert.match(s.sessionId, UUID_V4);
        assert.equal(new Set(ids(sessions)).size, 10);
      });

      it("counts the new session", async () => {
        await create({ accessLevel: "read", dataSource: "ds-x" });
        assert.deepEqual(await store.counters(A), {
          ...zeroCounters(),
          total: 1,
          active: 1,
          activeByAccessLevel: { read: 1 },
          activeByDataSource: { "ds-x": 1 },
        });
      });

      it("a repeated requestId returns the live session unchanged with created=false", async () => {
        const first = await store.create(input({ requestId: "req-1" }));
        assert.equal(first.created, true);
        await sleep(TICK);
        const again = await store.create(
          input({ requestId: "req-1", userId: "someone-else", dataSource: "other", ttlMs: 1000, metadata: '{"x":1}' }),
        );
        assert.equal(again.created, false);
        assert.deepEqual(again.session, first.session, "the same session, untouched");
        assert.deepEqual(await read(A, first.session.sessionId), first.session, "nothing changed");
        assert.deepEqual(await store.counters(A), {
          ...zeroCounters(),
          total: 1,
          active: 1,
          activeByAccessLevel: { write: 1 },
          activeByDataSource: { "source-1": 1 },
        });
        assert.deepEqual(ids(await listAll(A)), [first.session.sessionId]);
      });

      it("a retry under an older stored form of the request id (requestIdAliases, after a key rotation) finds the session", async () => {
        const first = await store.create(input({ requestId: "hmac-under-k1" }));
        const again = await store.create(input({ requestId: "hmac-under-k2", requestIdAliases: ["hmac-under-k1"] }));
        assert.equal(again.created, false);
        assert.equal(again.session.sessionId, first.session.sessionId);
        const other = await store.create(input({ requestId: "hmac-under-k2", requestIdAliases: ["unknown"] }));
        assert.equal(other.created, true, "no alias matched: a new session under the primary form");
        const retry = await store.create(input({ requestId: "hmac-under-k2" }));
        assert.equal(retry.session.sessionId, other.session.sessionId);
      });

      it("requestIds are scoped to the tenant", async () => {
        const a = await store.create(input({ tenant: A, requestId: "req-1" }));
        const b = await store.create(input({ tenant: B, requestId: "req-1" }));
        assert.equal(a.created, true);
        assert.equal(b.created, true);
        assert.notEqual(a.session.sessionId, b.session.sessionId);
        assert.equal(b.session.tenant, B);
        assert.equal((await store.counters(A)).total, 1);
        assert.equal((await store.counters(B)).total, 1);
      });

      it("different and empty requestIds create separate sessions", async () => {
        const results = [
          await store.create(input({ requestId: "req-1" })),
          await store.create(input({ requestId: "req-2" })),
          await store.create(input({ requestId: "" })),
          await store.create(input({ requestId: "" })),
        ];
        for (const r of results) assert.equal(r.created, true);
        assert.equal(new Set(results.map((r) => r.session.sessionId)).size, 4);
        assert.equal((await store.counters(A)).total, 4);
      });

      it("a closed session frees its requestId", async () => {
        const first = await store.create(input({ requestId: "req-1" }));
        await store.close(A, first.session.sessionId);
        const second = await store.create(input({ requestId: "req-1" }));
        assert.equal(second.created, true);
        assert.notEqual(second.session.sessionId, first.session.sessionId);
        const third = await store.create(input({ requestId: "req-1" }));
        assert.equal(third.created, false, "the new session now owns the requestId");
        assert.equal(third.session.sessionId, second.session.sessionId);
        assert.equal((await store.counters(A)).total, 2);
      });

      it("an expired session frees its requestId", async () => {
        const first = await store.create(input({ requestId: "req-1", ttlMs: SHORT_TTL }));
        await sleep(PAST_SHORT);
        const second = await store.create(input({ requestId: "req-1" }));
        assert.equal(second.created, true);
        assert.notEqual(second.session.sessionId, first.session.sessionId);
        const old = await store.get(A, first.session.sessionId, ENDED);
        assert.equal(old.status, "expired");
        assert.equal(old.endTime, first.session.expireTime);
        const c = await store.counters(A);
        assert.equal(c.total, 2);
        assert.equal(c.active, 1);
        assert.equal(c.expired, 1);
      });
    });

    // ------------------------------------------------------------------ get

    describe("get", () => {
      it("touch records the access time and leaves the version and expiry", async () => {
        const s = await create();
        await sleep(TICK);
        const before = Date.now();
        const touched = await store.get(A, s.sessionId, { touch: true, includeEnded: false });
        const after = Date.now();
        assert.ok(touched.lastAccessTime > s.lastAccessTime, "lastAccessTime moved forward");
        assertBetween(touched.lastAccessTime, before - CLOCK_SLACK_MS, after + CLOCK_SLACK_MS, "lastAccessTime");
        assert.equal(touched.version, 1, "a touch is not a write");
        assert.equal(touched.expireTime, s.expireTime);
        assert.equal(touched.createTime, s.createTime);
        assert.deepEqual(await read(A, s.sessionId), touched, "the touch was stored");
      });

      it("without touch changes nothing", async () => {
        const s = await create();
        await sleep(TICK);
        assert.deepEqual(await read(A, s.sessionId), s);
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), s, "includeEnded on a live session returns it as is");
      });

      it("an unknown session is not_found, with or without includeEnded", async () => {
        await create();
        await assertRejectsKind(store.get(A, randomUUID(), NO_TOUCH), "not_found");
        await assertRejectsKind(store.get(A, randomUUID(), ENDED), "not_found");
        await assertRejectsKind(store.get(A, randomUUID(), { touch: true, includeEnded: true }), "not_found");
      });

      it("a closed session is not_found unless includeEnded", async () => {
        const s = await create();
        const closed = await store.close(A, s.sessionId);
        await assertRejectsKind(store.get(A, s.sessionId, NO_TOUCH), "not_found");
        await assertRejectsKind(store.get(A, s.sessionId, { touch: true, includeEnded: false }), "not_found");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), closed);
        assert.deepEqual(await store.get(A, s.sessionId, { touch: true, includeEnded: true }), closed, "touch never changes an archive");
      });
    });

    // ------------------------------------------------------------------ update

    describe("update", () => {
      it("replaces the metadata, increments the version, keeps the immutable fields", async () => {
        const s = await create();
        const u = await store.update(A, s.sessionId, { metadata: '{"team":"red","n":2}' });
        assert.equal(u.metadata, '{"team":"red","n":2}');
        assert.equal(u.version, 2);
        assert.equal(u.sessionId, s.sessionId);
        assert.equal(u.tenant, s.tenant);
        assert.equal(u.userId, s.userId);
        assert.equal(u.createTime, s.createTime);
        assert.equal(u.expireTime, s.expireTime);
        assert.equal(u.accessLevel, s.accessLevel);
        assert.equal(u.dataSource, s.dataSource);
        assert.equal(u.status, "active");
        assert.equal(u.endTime, 0);
        assert.deepEqual(await read(A, s.sessionId), u, "update returns the stored state");
      });

      it("changes the access level and moves the per-level counters", async () => {
        const s = await create({ accessLevel: "write" });
        await create({ accessLevel: "read" });
        const u = await store.update(A, s.sessionId, { accessLevel: "admin" });
        assert.equal(u.accessLevel, "admin");
        assert.equal(u.metadata, s.metadata, "absent fields are left as they are");
        assert.equal(u.dataSource, s.dataSource);
        assert.equal(u.version, 2);
        assert.deepEqual((await store.counters(A)).activeByAccessLevel, { read: 1, admin: 1 });
      });

      it("changes the data source and moves the listing and the per-source counters", async () => {
        const s = await create({ dataSource: "source-1" });
        const other = await create({ dataSource: "source-1" });
        const u = await store.update(A, s.sessionId, { dataSource: "source-2" });
        assert.equal(u.dataSource, "source-2");
        assert.equal(u.version, 2);
        assert.deepEqual(ids(await listAll(A, { dataSource: "source-1" })), [other.sessionId]);
        assert.deepEqual(ids(await listAll(A, { dataSource: "source-2" })), [s.sessionId]);
        assert.deepEqual(ids(await listAll(A, { userId: "user-1", dataSource: "source-2" })), [s.sessionId]);
        assert.deepEqual((await store.counters(A)).activeByDataSource, { "source-1": 1, "source-2": 1 });
        await store.update(A, other.sessionId, { dataSource: "source-2" });
        assert.deepEqual(ids(await listAll(A, { dataSource: "source-1" })), []);
        assert.deepEqual((await store.counters(A)).activeByDataSource, { "source-2": 2 }, "a source with none is absent");
      });

      it("applies several fields at once", async () => {
        const s = await create({ accessLevel: "read", dataSource: "source-1" });
        const u = await store.update(A, s.sessionId, { metadata: "{}", accessLevel: "write", dataSource: "source-9" });
        assert.equal(u.metadata, "{}");
        assert.equal(u.accessLevel, "write");
        assert.equal(u.dataSource, "source-9");
        assert.equal(u.version, 2);
        assert.deepEqual(await read(A, s.sessionId), u);
        const c = await store.counters(A);
        assert.deepEqual(c.activeByAccessLevel, { write: 1 });
        assert.deepEqual(c.activeByDataSource, { "source-9": 1 });
      });

      it("an empty patch still increments the version", async () => {
        const s = await create();
        const u = await store.update(A, s.sessionId, {});
        assert.equal(u.version, 2);
        assert.equal(u.metadata, s.metadata);
      });

      it("applies when expectedVersion matches", async () => {
        const s = await create();
        const u1 = await store.update(A, s.sessionId, { metadata: '{"v":2}' }, 1);
        assert.equal(u1.version, 2);
        const u2 = await store.update(A, s.sessionId, { metadata: '{"v":3}' }, 2);
        assert.equal(u2.version, 3);
        assert.equal(u2.metadata, '{"v":3}');
      });

      it("a stale expectedVersion fails with version_mismatch and changes nothing", async () => {
        const s = await create({ accessLevel: "write", dataSource: "source-1" });
        await store.update(A, s.sessionId, { metadata: '{"v":2}' });
        const before = await read(A, s.sessionId);
        const countersBefore = await store.counters(A);
        await assertRejectsKind(
          store.update(A, s.sessionId, { metadata: '{"v":"lost"}', accessLevel: "read", dataSource: "elsewhere" }, 1),
          "version_mismatch",
        );
        await assertRejectsKind(store.update(A, s.sessionId, { metadata: '{"v":"lost"}' }, 3), "version_mismatch", "a future version");
        assert.deepEqual(await read(A, s.sessionId), before);
        assert.deepEqual(await store.counters(A), countersBefore);
        assert.deepEqual(await listAll(A, { dataSource: "elsewhere" }), []);
      });

      it("data writes count as versions for expectedVersion", async () => {
        const s = await create();
        const w = await store.setData(A, s.sessionId, "k", '"v"');
        assert.equal(w.version, 2);
        await assertRejectsKind(store.update(A, s.sessionId, { metadata: "{}" }, 1), "version_mismatch");
        const u = await store.update(A, s.sessionId, { metadata: "{}" }, 2);
        assert.equal(u.version, 3);
      });

      it("a read-level session may be updated (levels govern data only)", async () => {
        const s = await create({ accessLevel: "read" });
        const u = await store.update(A, s.sessionId, { accessLevel: "write", metadata: '{"up":true}' });
        assert.equal(u.accessLevel, "write");
        const w = await store.setData(A, s.sessionId, "k", '"v"');
        assert.equal(w.version, 3);
        await store.update(A, s.sessionId, { accessLevel: "read" });
        await assertRejectsKind(store.setData(A, s.sessionId, "k", '"w"'), "permission_denied", "after downgrade");
      });

      it("unknown → not_found, closed → ended", async () => {
        await assertRejectsKind(store.update(A, randomUUID(), { metadata: "{}" }), "not_found");
        await assertRejectsKind(store.update(A, randomUUID(), { metadata: "{}" }, 1), "not_found");
        const s = await create();
        const closed = await store.close(A, s.sessionId);
        await assertRejectsKind(store.update(A, s.sessionId, { metadata: "{}" }), "ended");
        await assertRejectsKind(store.update(A, s.sessionId, { metadata: "{}" }, closed.version), "ended");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), closed, "the archive is unchanged");
      });
    });

    // ------------------------------------------------------------------ extend

    describe("extend", () => {
      it("sets expireTime to now + ttl (later) and increments the version", async () => {
        const s = await create({ ttlMs: 60_000 });
        const before = Date.now();
        const e = await store.extend(A, s.sessionId, 120_000);
        const after = Date.now();
        assertBetween(e.expireTime, before + 120_000 - CLOCK_SLACK_MS, after + 120_000 + CLOCK_SLACK_MS, "expireTime = now + ttl");
        assert.ok(e.expireTime > s.expireTime);
        assert.equal(e.version, 2);
        assert.equal(e.createTime, s.createTime);
        assert.equal(e.metadata, s.metadata);
        assert.equal(e.status, "active");
        assert.deepEqual(await read(A, s.sessionId), e, "extend returns the stored state");
      });

      it("may move expireTime earlier", async () => {
        const s = await create({ ttlMs: LONG_TTL });
        const before = Date.now();
        const e = await store.extend(A, s.sessionId, 5_000);
        const after = Date.now();
        assertBetween(e.expireTime, before + 5_000 - CLOCK_SLACK_MS, after + 5_000 + CLOCK_SLACK_MS, "expireTime = now + ttl");
        assert.ok(e.expireTime < s.expireTime);
        assert.equal(e.version, 2);
      });

      it("an extended session outlives its original expiry, with its data and listing", async () => {
        const s = await create({ ttlMs: SHORT_TTL });
        await store.setData(A, s.sessionId, "k", '"kept"');
        const e = await store.extend(A, s.sessionId, LONG_TTL);
        await sleep(PAST_SHORT);
        const g = await read(A, s.sessionId);
        assert.equal(g.status, "active");
        assert.equal(g.expireTime, e.expireTime);
        assert.equal(await store.getData(A, s.sessionId, "k"), '"kept"');
        assert.deepEqual(ids(await listAll(A)), [s.sessionId]);
        assert.deepEqual(await store.expireDue(100), []);
        assert.equal((await store.counters(A)).active, 1);
        assert.equal((await store.counters(A)).expired, 0);
      });

      it("a session shortened by extend expires at its new time", async () => {
        const s = await create({ ttlMs: LONG_TTL });
        await store.setData(A, s.sessionId, "k", '"v"');
        const e = await store.extend(A, s.sessionId, SHORT_TTL);
        await sleep(PAST_SHORT);
        assert.deepEqual(await listAll(A), []);
        const due = await store.expireDue(100);
        assert.deepEqual(ids(due), [s.sessionId], "the expiry index follows the new expireTime");
        const [rec] = due;
        assert.ok(rec);
        assert.equal(rec.status, "expired");
        assert.equal(rec.endTime, e.expireTime);
        assert.equal(rec.version, 4);
        await assertRejectsKind(store.getData(A, s.sessionId, "k"), "not_found");
      });

      it("unknown → not_found, closed → ended", async () => {
        await assertRejectsKind(store.extend(A, randomUUID(), 60_000), "not_found");
        const s = await create();
        const closed = await store.close(A, s.sessionId);
        await assertRejectsKind(store.extend(A, s.sessionId, 60_000), "ended");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), closed);
        assert.deepEqual(await listAll(A), []);
      });
    });

    // ------------------------------------------------------------------ close

    describe("close", () => {
      it("archives the final state as closed and removes the session and its data", async () => {
        const s = await create({ accessLevel: "admin", dataSource: "source-7" });
        await store.update(A, s.sessionId, { metadata: '{"final":true}' });
        await store.setData(A, s.sessionId, "k", '"v"');
        const before = Date.now();
        const c = await store.close(A, s.sessionId);
        const after = Date.now();
        assert.equal(c.status, "closed");
        assert.equal(c.sessionId, s.sessionId);
        assert.equal(c.tenant, A);
        assert.equal(c.userId, s.userId);
        assert.equal(c.dataSource, "source-7");
        assert.equal(c.accessLevel, "admin");
        assert.equal(c.metadata, '{"final":true}', "the last metadata is kept");
        assert.equal(c.createTime, s.createTime);
        assert.equal(c.expireTime, s.expireTime);
        assert.equal(c.version, 4, "create 1, update 2, setData 3, close 4");
        assertBetween(c.endTime, before - CLOCK_SLACK_MS, after + CLOCK_SLACK_MS, "endTime = now");
        assert.ok(c.endTime >= c.createTime);
        await assertRejectsKind(store.get(A, s.sessionId, NO_TOUCH), "not_found");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), c);
        await assertAllDataOps(A, s.sessionId, "not_found", "closed session");
        assert.deepEqual(await listAll(A), []);
        assert.deepEqual(await listAll(A, { dataSource: "source-7" }), []);
        assert.deepEqual(await listAll(A, { userId: s.userId }), []);
      });

      it("moves the counters and adds the duration", async () => {
        const s = await create({ accessLevel: "read", dataSource: "source-3" });
        const keep = await create({ accessLevel: "write", dataSource: "source-1" });
        await sleep(TICK);
        const c = await store.close(A, s.sessionId);
        assert.ok(c.endTime > c.createTime);
        assert.deepEqual(await store.counters(A), {
          total: 2,
          active: 1,
          expired: 0,
          closed: 1,
          activeByAccessLevel: { write: 1 },
          activeByDataSource: { "source-1": 1 },
          endedDurationMsSum: c.endTime - c.createTime,
        });
        assert.deepEqual(ids(await listAll(A)), [keep.sessionId]);
      });

      it("closing twice fails with ended and changes nothing", async () => {
        const s = await create();
        const c = await store.close(A, s.sessionId);
        const countersAfterClose = await store.counters(A);
        await assertRejectsKind(store.close(A, s.sessionId), "ended");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), c);
        assert.deepEqual(await store.counters(A), countersAfterClose);
      });

      it("an unknown session is not_found", async () => {
        await assertRejectsKind(store.close(A, randomUUID()), "not_found");
        assert.deepEqual(await store.counters(A), zeroCounters());
      });
    });

    // ------------------------------------------------------------------ expiry

    describe("expiry", () => {
      it("an expired session is not_found, archived as expired with its last state, and counted", async () => {
        const s = await create({ ttlMs: SHORT_TTL, accessLevel: "write", dataSource: "source-5" });
        await store.update(A, s.sessionId, { metadata: '{"last":1}' });
        await store.setData(A, s.sessionId, "k", '"v"');
        await sleep(PAST_SHORT);
        await assertRejectsKind(store.get(A, s.sessionId, NO_TOUCH), "not_found");
        const rec = await store.get(A, s.sessionId, ENDED);
        assert.equal(rec.status, "expired");
        assert.equal(rec.endTime, s.expireTime, "endTime == expireTime");
        assert.equal(rec.expireTime, s.expireTime);
        assert.equal(rec.metadata, '{"last":1}');
        assert.equal(rec.version, 4, "create 1, update 2, setData 3, expiry 4");
        assert.equal(rec.userId, s.userId);
        assert.equal(rec.dataSource, "source-5");
        assert.equal(rec.accessLevel, "write");
        assert.equal(rec.createTime, s.createTime);
        await assertAllDataOps(A, s.sessionId, "not_found", "expired session");
        assert.deepEqual(await listAll(A), []);
        assert.deepEqual(await store.counters(A), {
          total: 1,
          active: 0,
          expired: 1,
          closed: 0,
          activeByAccessLevel: {},
          activeByDataSource: {},
          endedDurationMsSum: SHORT_TTL,
        });
        assert.deepEqual(await store.expireDue(100), [], "already archived: not expired again");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), rec, "the archive is stable");
        assert.equal((await store.counters(A)).expired, 1);
      });

      it("get with includeEnded archives a due session itself", async () => {
        const s = await create({ ttlMs: SHORT_TTL });
        await sleep(PAST_SHORT);
        const rec = await store.get(A, s.sessionId, { touch: true, includeEnded: true });
        assert.equal(rec.status, "expired");
        assert.equal(rec.endTime, s.expireTime);
        assert.equal(rec.version, 2);
        assert.equal((await store.counters(A)).expired, 1);
        assert.equal((await store.counters(A)).active, 0);
        assert.deepEqual(await store.expireDue(100), []);
      });

      it("a due session is not listed even before it is archived", async () => {
        const due = await create({ ttlMs: SHORT_TTL });
        const live = await create({ ttlMs: LONG_TTL });
        await sleep(PAST_SHORT);
        assert.deepEqual(ids(await listAll(A)), [live.sessionId]);
        assert.deepEqual(ids(await listAll(A, { userId: "user-1" })), [live.sessionId]);
        assert.deepEqual(ids(await listAll(A, { dataSource: "source-1" })), [live.sessionId]);
        assert.deepEqual(ids(await listAll(A, { userId: "user-1", dataSource: "source-1" })), [live.sessionId]);
        assert.deepEqual(ids(await store.expireDue(100)), [due.sessionId]);
      });

      it("expireDue archives exactly the due sessions of every tenant, once", async () => {
        const a1 = await create({ tenant: A, ttlMs: SHORT_TTL, accessLevel: "read" });
        const a2 = await create({ tenant: A, ttlMs: SHORT_TTL, dataSource: "source-2" });
        const b1 = await create({ tenant: B, ttlMs: SHORT_TTL });
        const live = await create({ tenant: A, ttlMs: LONG_TTL, accessLevel: "admin" });
        await sleep(PAST_SHORT);
        const due = await store.expireDue(100);
        assert.deepEqual(sortedIds(due), sortedIds([a1, a2, b1]));
        for (let i = 1; i < due.length; i++) {
          const prev = due[i - 1];
          const cur = due[i];
          assert.ok(prev && cur && prev.expireTime <= cur.expireTime, "in order of expireTime");
        }
        const created = new Map([a1, a2, b1].map((s) => [s.sessionId, s]));
        for (const rec of due) {
          const orig = created.get(rec.sessionId);
          assert.ok(orig);
          assert.equal(rec.status, "expired");
          assert.equal(rec.tenant, orig.tenant);
          assert.equal(rec.endTime, orig.expireTime);
          assert.equal(rec.version, 2);
          assert.equal(rec.metadata, orig.metadata);
          assert.deepEqual(await store.get(rec.tenant, rec.sessionId, ENDED), rec, "the archive is what expireDue returned");
        }
        assert.deepEqual(await store.expireDue(100), [], "a second call finds nothing");
        assert.equal((await read(A, live.sessionId)).status, "active");
        assert.deepEqual(await store.counters(A), {
          total: 3,
          active: 1,
          expired: 2,
          closed: 0,
          activeByAccessLevel: { admin: 1 },
          activeByDataSource: { "source-1": 1 },
          endedDurationMsSum: 2 * SHORT_TTL,
        });
        assert.deepEqual(await store.counters(B), {
          ...zeroCounters(),
          total: 1,
          expired: 1,
          endedDurationMsSum: SHORT_TTL,
        });
      });

      it("expireDue with nothing due returns none", async () => {
        await create();
        assert.deepEqual(await store.expireDue(100), []);
        assert.equal((await store.counters(A)).active, 1);
      });

      it("expireDue honours its limit, earliest expiry first", async () => {
        // Created out of expiry order, so creation order cannot pass for expiry order.
        const s3 = await create({ ttlMs: 340 });
        const s1 = await create({ ttlMs: 200 });
        const s2 = await create({ ttlMs: 270 });
        // On a loaded machine the creates can be far enough apart to change that order: expect the stored one.
        const [first, second, third] = [s1, s2, s3].sort((x, y) => x.expireTime - y.expireTime || (x.sessionId < y.sessionId ? -1 : 1));
        assert.ok(first !== undefined && second !== undefined && third !== undefined);
        await sleep(Math.max(0, third.expireTime - Date.now()) + 80);
        assert.deepEqual(ids(await store.expireDue(2)), [first.sessionId, second.sessionId]);
        assert.deepEqual(ids(await store.expireDue(10)), [third.sessionId]);
        assert.deepEqual(await store.expireDue(10), []);
        assert.equal((await store.counters(A)).expired, 3);
      });

      it("concurrent expireDue calls expire each session exactly once", async () => {
        const sessions = await Promise.all(Array.from({ length: 6 }, () => create({ ttlMs: SHORT_TTL })));
        await sleep(PAST_SHORT);
        const results = await Promise.all(Array.from({ length: 5 }, () => store.expireDue(3)));
        const all = results.flat();
        assert.deepEqual(sortedIds(all), sortedIds(sessions), "each due session exactly once");
        assert.equal((await store.counters(A)).expired, 6);
        assert.equal((await store.counters(A)).active, 0);
      });

      it("every method that meets a due session archives it first; expireDue then skips it", async () => {
        const sessions = await Promise.all(Array.from({ length: 10 }, () => create({ ttlMs: SHORT_TTL })));
        await Promise.all(sessions.map((s) => store.setData(A, s.sessionId, "k", '"v"')));
        await sleep(PAST_SHORT);
        const id = (i: number): string => {
          const s = sessions[i];
          assert.ok(s);
          return s.sessionId;
        };
        await assertRejectsKind(store.get(A, id(0), NO_TOUCH), "not_found", "get");
        await assertRejectsKind(store.update(A, id(1), { metadata: "{}" }), "ended", "update");
        await assertRejectsKind(store.extend(A, id(2), LONG_TTL), "ended", "extend");
        await assertRejectsKind(store.close(A, id(3)), "ended", "close");
        await assertRejectsKind(store.setData(A, id(4), "k2", '"v"'), "not_found", "setData");
        await assertRejectsKind(store.getData(A, id(5), "k"), "not_found", "getData");
        await assertRejectsKind(store.deleteData(A, id(6), "k"), "not_found", "deleteData");
        await assertRejectsKind(store.listData(A, id(7), true), "not_found", "listData");
        await assertRejectsKind(store.clearData(A, id(8)), "not_found", "clearData");
        // sessions[9] is met by no method: expireDue must archive exactly that one.
        assert.deepEqual(await store.counters(A), {
          total: 10,
          active: 1,
          expired: 9,
          closed: 0,
          activeByAccessLevel: { write: 1 },
          activeByDataSource: { "source-1": 1 },
          endedDurationMsSum: 9 * SHORT_TTL,
        });
        assert.deepEqual(ids(await store.expireDue(100)), [id(9)]);
        for (const s of sessions) {
          const rec = await store.get(A, s.sessionId, ENDED);
          assert.equal(rec.status, "expired");
          assert.equal(rec.endTime, s.expireTime);
          assert.equal(rec.version, 3, "create 1, setData 2, expiry 3 (the refused operation changed nothing)");
        }
        assert.equal((await store.counters(A)).expired, 10);
      });
    });

    // ------------------------------------------------------------------ list

    describe("list", () => {
      /** 12 live sessions over 2 users and 2 sources, created in parallel so expireTimes tie. */
      async function fixture(): Promise<SessionRecord[]> {
        return Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            create({
              userId: i % 2 === 0 ? "user-1" : "user-2",
              dataSource: i % 3 === 0 ? "source-2" : "source-1",
              ttlMs: LONG_TTL + (i % 4) * 1000,
            }),
          ),
        );
      }

      function expected(all: SessionRecord[], filter: ListFilter): SessionRecord[] {
        return all
          .filter((s) => filter.userId === undefined || s.userId === filter.userId)
          .filter((s) => filter.dataSource === undefined || s.dataSource === filter.dataSource)
          .sort(compareListOrder);
      }

      it("lists live sessions in (expireTime, sessionId) order, with every filter", async () => {
        const all = await fixture();
        const filters: ListFilter[] = [
          {},
          { userId: "user-1" },
          { userId: "user-2" },
          { dataSource: "source-1" },
          { dataSource: "source-2" },
          { userId: "user-1", dataSource: "source-2" },
          { userId: "user-2", dataSource: "source-1" },
        ];
        for (const filter of filters) {
          const want = expected(all, filter);
          assert.ok(want.length > 0);
          const got = await listAll(A, filter);
          assert.deepEqual(ids(got), ids(want), `filter ${JSON.stringify(filter)}`);
          assert.deepEqual(got, want, "listed records are the stored records");
        }
      });

      it("pages with a small limit visit every session exactly once", async () => {
        const all = await fixture();
        for (const limit of [1, 4, 5, 12, 13]) {
          const got = await listPaged(A, {}, limit);
          assert.deepEqual(ids(got), ids(expected(all, {})), `limit ${limit}`);
        }
        for (const limit of [1, 2, 3]) {
          const got = await listPaged(A, { userId: "user-2" }, limit);
          assert.deepEqual(ids(got), ids(expected(all, { userId: "user-2" })), `user-2, limit ${limit}`);
          const got2 = await listPaged(A, { dataSource: "source-2", userId: "user-1" }, limit);
          assert.deepEqual(ids(got2), ids(expected(all, { dataSource: "source-2", userId: "user-1" })), `both, limit ${limit}`);
        }
      });

      it("the page that reaches the end has no next, even when it is full", async () => {
        const all = await fixture();
        const sorted = expected(all, {});
        const first = await store.list(A, {}, 6);
        assert.equal(first.sessions.length, 6);
        assert.ok(first.next);
        const second = await store.list(A, {}, 6, first.next);
        assert.deepEqual(ids(second.sessions), ids(sorted.slice(6)));
        assert.equal(second.next, undefined, "12 sessions, pages of 6: the second page is the last");
        const whole = await store.list(A, {}, 12);
        assert.equal(whole.sessions.length, 12);
        assert.equal(whole.next, undefined);
      });

      it("starts strictly after the cursor", async () => {
        const all = await fixture();
        const sorted = expected(all, {});
        const pivot = sorted[4];
        assert.ok(pivot);
        const page = await store.list(A, {}, 100, { expireTime: pivot.expireTime, sessionId: pivot.sessionId });
        assert.deepEqual(ids(page.sessions), ids(sorted.slice(5)));
        const last = sorted[sorted.length - 1];
        assert.ok(last);
        const end = await store.list(A, {}, 100, { expireTime: last.expireTime, sessionId: last.sessionId });
        assert.deepEqual(end.sessions, []);
        assert.equal(end.next, undefined);
      });

      it("an empty match gives an empty page without next", async () => {
        await fixture();
        for (const filter of [{ userId: "nobody" }, { dataSource: "nothing" }, { userId: "user-1", dataSource: "nothing" }]) {
          const page = await store.list(A, filter, 10);
          assert.deepEqual(page.sessions, []);
          assert.equal(page.next, undefined);
        }
      });

      it("excludes closed and expired sessions", async () => {
        const all = await fixture();
        const short = await create({ ttlMs: SHORT_TTL, userId: "user-1", dataSource: "source-1" });
        const [toClose] = all;
        assert.ok(toClose);
        await store.close(A, toClose.sessionId);
        await sleep(PAST_SHORT);
        const remaining = all.slice(1);
        const got = await listPaged(A, {}, 5);
        assert.deepEqual(ids(got), ids(expected(remaining, {})));
        assert.ok(!ids(got).includes(short.sessionId));
        assert.deepEqual(ids(await listAll(A, { userId: "user-1", dataSource: "source-1" })), ids(expected(remaining, { userId: "user-1", dataSource: "source-1" })));
        await store.expireDue(100);
        assert.deepEqual(ids(await listAll(A)), ids(expected(remaining, {})));
      });

      it("extend moves a session in the order", async () => {
        const all = await fixture();
        const sorted = expected(all, {});
        const firstBefore = sorted[0];
        assert.ok(firstBefore);
        const e = await store.extend(A, firstBefore.sessionId, LONG_TTL * 2);
        const got = await listAll(A);
        const lastNow = got[got.length - 1];
        assert.ok(lastNow);
        assert.equal(lastNow.sessionId, firstBefore.sessionId);
        assert.equal(lastNow.expireTime, e.expireTime);
        const byUser = await listAll(A, { userId: firstBefore.userId, dataSource: firstBefore.dataSource });
        assert.equal(byUser[byUser.length - 1]?.sessionId, firstBefore.sessionId, "filtered indexes follow too");
        assert.deepEqual(ids(got), ids([...got].sort(compareListOrder)));
      });
    });

    // ------------------------------------------------------------------ data

    describe("data", () => {
      it("set, get and overwrite a value; each write increments the version", async () => {
        const s = await create();
        const tricky = '{"s":"é😀\\n\\"q\\"","n":[1,null]}';
        assert.deepEqual(await store.setData(A, s.sessionId, "k", tricky), { version: 2 });
        assert.equal(await store.getData(A, s.sessionId, "k"), tricky, "values round-trip byte for byte");
        assert.deepEqual(await store.setData(A, s.sessionId, "k", '"second"'), { version: 3 });
        assert.equal(await store.getData(A, s.sessionId, "k"), '"second"');
        assert.equal((await read(A, s.sessionId)).version, 3, "reads do not change the version");
      });

      it("getData of a missing key is undefined", async () => {
        const s = await create();
        assert.equal(await store.getData(A, s.sessionId, "missing"), undefined);
        await store.setData(A, s.sessionId, "k", '"v"');
        assert.equal(await store.getData(A, s.sessionId, "missing"), undefined);
        assert.equal((await read(A, s.sessionId)).version, 2);
      });

      it("deleteData reports whether the key existed and always increments the version", async () => {
        const s = await create();
        await store.setData(A, s.sessionId, "k", '"v"');
        await store.setData(A, s.sessionId, "other", '"o"');
        assert.deepEqual(await store.deleteData(A, s.sessionId, "k"), { deleted: true, version: 4 });
        assert.equal(await store.getData(A, s.sessionId, "k"), undefined);
        assert.equal(await store.getData(A, s.sessionId, "other"), '"o"', "other keys stay");
        assert.deepEqual(await store.deleteData(A, s.sessionId, "k"), { deleted: false, version: 5 });
        assert.equal((await read(A, s.sessionId)).version, 5);
      });

      it("listData returns the keys sorted, with values only when asked", async () => {
        const s = await create();
        const entries: [string, string][] = [
          ["b", '"vb"'],
          ["B", '"vB"'],
          ["a", '"va"'],
          ["10", "10"],
          ["9", "9"],
        ];
        for (const [k, v] of entries) await store.setData(A, s.sessionId, k, v);
        const sortedKeys = ["10", "9", "B", "a", "b"];
        const withValues = await store.listData(A, s.sessionId, true);
        assert.deepEqual([...withValues.keys()], sortedKeys);
        assert.deepEqual(
          [...withValues.entries()],
          sortedKeys.map((k) => [k, entries.find(([ek]) => ek === k)?.[1]]),
        );
        const keysOnly = await store.listData(A, s.sessionId, false);
        assert.deepEqual([...keysOnly.keys()], sortedKeys);
        assert.deepEqual([...keysOnly.values()], sortedKeys.map(() => ""), "no values without includeValues");
        assert.equal((await read(A, s.sessionId)).version, 6, "listing is not a write");
        const empty = await create();
        assert.equal((await store.listData(A, empty.sessionId, true)).size, 0);
      });

      it("clearData removes every key, returns the count, and increments the version", async () => {
        const s = await create();
        for (const k of ["x", "y", "z"]) await store.setData(A, s.sessionId, k, '"v"');
        assert.deepEqual(await store.clearData(A, s.sessionId), { deletedCount: 3, version: 5 });
        assert.equal((await store.listData(A, s.sessionId, true)).size, 0);
        assert.equal(await store.getData(A, s.sessionId, "x"), undefined);
        assert.deepEqual(await store.clearData(A, s.sessionId), { deletedCount: 0, version: 6 });
        assert.deepEqual(await store.setData(A, s.sessionId, "x", '"again"'), { version: 7 });
      });

      it("data reads and writes record the access time", async () => {
        const s = await create();
        let last = s.lastAccessTime;
        const ops: [string, () => Promise<unknown>][] = [
          ["setData", () => store.setData(A, s.sessionId, "k", '"v"')],
          ["getData", () => store.getData(A, s.sessionId, "k")],
          ["listData", () => store.listData(A, s.sessionId, false)],
          ["deleteData", () => store.deleteData(A, s.sessionId, "k")],
          ["clearData", () => store.clearData(A, s.sessionId)],
        ];
        for (const [what, op] of ops) {
          await sleep(TICK);
          await op();
          const now = (await read(A, s.sessionId)).lastAccessTime;
          assert.ok(now > last, `${what} moves lastAccessTime (${now} > ${last})`);
          last = now;
        }
        assert.equal((await read(A, s.sessionId)).expireTime, s.expireTime, "data operations do not extend");
      });

      it("a read-level session can read data but not write it; refused writes change nothing", async () => {
        const s = await create({ accessLevel: "write" });
        await store.setData(A, s.sessionId, "k", '"v"');
        await store.update(A, s.sessionId, { accessLevel: "read" });
        await sleep(TICK);
        const before = await read(A, s.sessionId);
        await assertRejectsKind(store.setData(A, s.sessionId, "new", '"x"'), "permission_denied", "set new");
        await assertRejectsKind(store.setData(A, s.sessionId, "k", '"x"'), "permission_denied", "overwrite");
        await assertRejectsKind(store.deleteData(A, s.sessionId, "k"), "permission_denied", "delete");
        await assertRejectsKind(store.deleteData(A, s.sessionId, "absent"), "permission_denied", "delete absent");
        await assertRejectsKind(store.clearData(A, s.sessionId), "permission_denied", "clear");
        assert.deepEqual(await read(A, s.sessionId), before, "nothing changed, not even the access time");
        assert.equal(await store.getData(A, s.sessionId, "k"), '"v"');
        assert.deepEqual([...(await store.listData(A, s.sessionId, true)).entries()], [["k", '"v"']]);

        const fresh = await create({ accessLevel: "read" });
        await assertRejectsKind(store.setData(A, fresh.sessionId, "k", '"v"'), "permission_denied");
        assert.equal((await store.listData(A, fresh.sessionId, false)).size, 0);
        assert.equal((await read(A, fresh.sessionId)).version, 1);
      });

      it("admin sessions can write data", async () => {
        const s = await create({ accessLevel: "admin" });
        assert.deepEqual(await store.setData(A, s.sessionId, "k", '"v"'), { version: 2 });
        assert.deepEqual(await store.deleteData(A, s.sessionId, "k"), { deleted: true, version: 3 });
        assert.deepEqual(await store.clearData(A, s.sessionId), { deletedCount: 0, version: 4 });
      });

      it("maxDataKeys: a new key beyond the limit is limit_exceeded; overwriting is fine", async () => {
        const max = CONFORMANCE_LIMITS.maxDataKeys;
        const s = await create();
        for (let i = 0; i < max; i++) await store.setData(A, s.sessionId, `k${i}`, `${i}`);
        await sleep(TICK);
        const before = await read(A, s.sessionId);
        assert.equal(before.version, 1 + max);
        await assertRejectsKind(store.setData(A, s.sessionId, "one-too-many", '"x"'), "limit_exceeded");
        assert.deepEqual(await read(A, s.sessionId), before, "nothing changed");
        assert.equal(await store.getData(A, s.sessionId, "one-too-many"), undefined);
        assert.deepEqual(await store.setData(A, s.sessionId, "k0", '"overwritten"'), { version: 2 + max });
        assert.equal(await store.getData(A, s.sessionId, "k0"), '"overwritten"');
        await store.deleteData(A, s.sessionId, "k1");
        assert.deepEqual(await store.setData(A, s.sessionId, "one-too-many", '"x"'), { version: 4 + max }, "room again after a delete");
        assert.equal((await store.listData(A, s.sessionId, false)).size, max);
        await store.clearData(A, s.sessionId);
        for (let i = 0; i < max; i++) await store.setData(A, s.sessionId, `n${i}`, `${i}`);
        await assertRejectsKind(store.setData(A, s.sessionId, "n-extra", '"x"'), "limit_exceeded", "after clear the limit holds again");
      });

      it("unknown and ended sessions are not_found for every data operation", async () => {
        await assertAllDataOps(A, randomUUID(), "not_found", "unknown session");
        const s = await create();
        await store.setData(A, s.sessionId, "k", '"v"');
        await store.close(A, s.sessionId);
        await assertAllDataOps(A, s.sessionId, "not_found", "closed session");
      });
    });

    // ------------------------------------------------------------------ counters

    describe("counters", () => {
      it("a tenant with no sessions has zero counters and empty maps", async () => {
        assert.deepEqual(await store.counters(A), zeroCounters());
        await create({ tenant: B });
        assert.deepEqual(await store.counters(A), zeroCounters());
      });

      it("counts live sessions by level and data source; zero entries are absent", async () => {
        await create({ accessLevel: "read", dataSource: "s1" });
        await create({ accessLevel: "read", dataSource: "s1" });
        const w = await create({ accessLevel: "write", dataSource: "s2" });
        await create({ accessLevel: "admin", dataSource: "s1" });
        assert.deepEqual(await store.counters(A), {
          ...zeroCounters(),
          total: 4,
          active: 4,
          activeByAccessLevel: { read: 2, write: 1, admin: 1 },
          activeByDataSource: { s1: 3, s2: 1 },
        });
        await sleep(TICK);
        const closed = await store.close(A, w.sessionId);
        const closedDuration = closed.endTime - closed.createTime;
        assert.ok(closedDuration > 0);
        assert.deepEqual(await store.counters(A), {
          total: 4,
          active: 3,
          expired: 0,
          closed: 1,
          activeByAccessLevel: { read: 2, admin: 1 },
          activeByDataSource: { s1: 3 },
          endedDurationMsSum: closedDuration,
        });
        await create({ accessLevel: "write", dataSource: "s3", ttlMs: SHORT_TTL });
        assert.deepEqual((await store.counters(A)).activeByDataSource, { s1: 3, s3: 1 });
        await sleep(PAST_SHORT);
        assert.equal((await store.expireDue(10)).length, 1);
        assert.deepEqual(await store.counters(A), {
          total: 5,
          active: 3,
          expired: 1,
          closed: 1,
          activeByAccessLevel: { read: 2, admin: 1 },
          activeByDataSource: { s1: 3 },
          endedDurationMsSum: closedDuration + SHORT_TTL,
        });
      });

      it("counters are not changed by reads, touches or data writes", async () => {
        const s = await create();
        const c = await store.counters(A);
        await store.get(A, s.sessionId, { touch: true, includeEnded: false });
        await store.setData(A, s.sessionId, "k", '"v"');
        await store.update(A, s.sessionId, { metadata: "{}" });
        await store.extend(A, s.sessionId, LONG_TTL);
        await store.list(A, {}, 10);
        assert.deepEqual(await store.counters(A), c);
      });
    });

    // ------------------------------------------------------------------ tenant isolation

    describe("tenant isolation", () => {
      it("nothing of one tenant is visible or changeable through another", async () => {
        const s = await create({ tenant: A, userId: "shared-user", dataSource: "shared-source" });
        await store.setData(A, s.sessionId, "k", '"v"');
        const gone = await create({ tenant: A, userId: "shared-user", dataSource: "shared-source" });
        await store.close(A, gone.sessionId);
        const before = await read(A, s.sessionId);
        const countersA = await store.counters(A);

        for (const id of [s.sessionId, gone.sessionId]) {
          await assertRejectsKind(store.get(B, id, NO_TOUCH), "not_found", "get");
          await assertRejectsKind(store.get(B, id, { touch: true, includeEnded: true }), "not_found", "get includeEnded");
          await assertRejectsKind(store.update(B, id, { metadata: '{"evil":1}', accessLevel: "admin" }), "not_found", "update");
          await assertRejectsKind(store.update(B, id, { metadata: "{}" }, 2), "not_found", "update expectedVersion");
          await assertRejectsKind(store.extend(B, id, 1_000), "not_found", "extend");
          await assertRejectsKind(store.close(B, id), "not_found", "close");
          await assertAllDataOps(B, id, "not_found", "other tenant");
        }
        for (const filter of [{}, { userId: "shared-user" }, { dataSource: "shared-source" }, { userId: "shared-user", dataSource: "shared-source" }]) {
          const page = await store.list(B, filter, 10);
          assert.deepEqual(page.sessions, []);
          assert.equal(page.next, undefined);
        }
        assert.deepEqual(await store.counters(B), zeroCounters());

        assert.deepEqual(await read(A, s.sessionId), before, "tenant A's session is untouched");
        assert.equal(await store.getData(A, s.sessionId, "k"), '"v"');
        assert.equal((await store.get(A, gone.sessionId, ENDED)).status, "closed");
        assert.deepEqual(await store.counters(A), countersA);
      });

      it("the same user and data source in two tenants are listed and counted apart", async () => {
        const a = await create({ tenant: A });
        const b = await create({ tenant: B, accessLevel: "read" });
        assert.deepEqual(ids(await listAll(A, { userId: "user-1", dataSource: "source-1" })), [a.sessionId]);
        assert.deepEqual(ids(await listAll(B, { userId: "user-1", dataSource: "source-1" })), [b.sessionId]);
        assert.deepEqual(ids(await listAll(B)), [b.sessionId]);
        assert.deepEqual((await store.counters(A)).activeByAccessLevel, { write: 1 });
        assert.deepEqual((await store.counters(B)).activeByAccessLevel, { read: 1 });
        await store.close(A, a.sessionId);
        assert.equal((await store.counters(B)).active, 1);
        assert.equal((await store.counters(B)).closed, 0);
      });
    });

    // ------------------------------------------------------------------ concurrency

    describe("concurrency", () => {
      it("20 parallel updates with the same expectedVersion: exactly one wins", async () => {
        const s = await create();
        const results = await Promise.allSettled(
          Array.from({ length: 20 }, (_, i) => store.update(A, s.sessionId, { metadata: `{"writer":${i}}` }, 1)),
        );
        const wins = fulfilled(results);
        assert.equal(wins.length, 1);
        assert.deepEqual(rejectionKinds(results), Array.from({ length: 19 }, () => "version_mismatch"));
        const [win] = wins;
        assert.ok(win);
        assert.equal(win.version, 2);
        assert.deepEqual(await read(A, s.sessionId), win);
      });

      it("20 parallel setData calls all apply, each with its own version", async () => {
        const max = CONFORMANCE_LIMITS.maxDataKeys;
        const s = await create();
        const writes = Array.from({ length: 20 }, (_, i) => ({ key: `k${i % max}`, value: `${i}` }));
        const results = await Promise.all(writes.map((w) => store.setData(A, s.sessionId, w.key, w.value)));
        assert.deepEqual(
          results.map((r) => r.version).sort((x, y) => x - y),
          Array.from({ length: 20 }, (_, i) => i + 2),
          "every write got a distinct version",
        );
        assert.equal((await read(A, s.sessionId)).version, 21);
        const data = await store.listData(A, s.sessionId, true);
        assert.equal(data.size, max);
        for (let k = 0; k < max; k++) {
          let lastValue: string | undefined;
          let lastVersion = 0;
          writes.forEach((w, i) => {
            const v = results[i]?.version ?? 0;
            if (w.key === `k${k}` && v > lastVersion) {
              lastVersion = v;
              lastValue = w.value;
            }
          });
          assert.equal(data.get(`k${k}`), lastValue, `k${k} holds the write with the highest version`);
        }
      });

      it("20 parallel setData on distinct keys of several sessions all land", async () => {
        const max = CONFORMANCE_LIMITS.maxDataKeys;
        const sessions = await Promise.all(Array.from({ length: Math.ceil(20 / max) }, () => create()));
        await Promise.all(
          Array.from({ length: 20 }, (_, i) => {
            const s = sessions[Math.floor(i / max)];
            assert.ok(s);
            return store.setData(A, s.sessionId, `key-${i}`, `${i}`);
          }),
        );
        for (const [n, s] of sessions.entries()) {
          const data = await store.listData(A, s.sessionId, true);
          const want = Array.from({ length: max }, (_, j) => n * max + j)
            .filter((i) => i < 20)
            .map((i) => [`key-${i}`, `${i}`] as const)
            .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
          assert.deepEqual([...data.entries()], want);
        }
      });

      it("20 parallel setData of new keys: exactly maxDataKeys fit", async () => {
        const max = CONFORMANCE_LIMITS.maxDataKeys;
        const s = await create();
        const keys = Array.from({ length: 20 }, (_, i) => `new-${String(i).padStart(2, "0")}`);
        const results = await Promise.allSettled(keys.map((k) => store.setData(A, s.sessionId, k, '"v"')));
        const okKeys = keys.filter((_, i) => results[i]?.status === "fulfilled");
        assert.equal(okKeys.length, max);
        assert.deepEqual(rejectionKinds(results), Array.from({ length: 20 - max }, () => "limit_exceeded"));
        assert.deepEqual([...(await store.listData(A, s.sessionId, false)).keys()], okKeys);
        assert.equal((await read(A, s.sessionId)).version, 1 + max);
      });

      it("20 parallel extend and close on one session: exactly one close wins", async () => {
        const s = await create();
        const ops = Array.from({ length: 20 }, (_, i) =>
          i % 2 === 0 ? { op: "close" as const, p: store.close(A, s.sessionId) } : { op: "extend" as const, p: store.extend(A, s.sessionId, LONG_TTL + i) },
        );
        const results = await Promise.allSettled(ops.map((o) => o.p));
        const closeResults = results.filter((_, i) => ops[i]?.op === "close");
        const extendResults = results.filter((_, i) => ops[i]?.op === "extend");
        const closeWins = fulfilled(closeResults);
        assert.equal(closeWins.length, 1, "exactly one close succeeds");
        assert.deepEqual(rejectionKinds(closeResults), Array.from({ length: 9 }, () => "ended"));
        for (const kind of rejectionKinds(extendResults)) assert.equal(kind, "ended");
        const extendWins = fulfilled(extendResults).length;
        const [closed] = closeWins;
        assert.ok(closed);
        assert.equal(closed.status, "closed");
        assert.equal(closed.version, 1 + extendWins + 1, "every successful extend came before the close");
        assert.deepEqual(await store.get(A, s.sessionId, ENDED), closed);
        const c = await store.counters(A);
        assert.equal(c.closed, 1);
        assert.equal(c.active, 0);
      });

      it("20 parallel creates with one requestId make one session", async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, () => store.create(input({ requestId: "same-request" }))),
        );
        assert.equal(results.filter((r) => r.created).length, 1);
        assert.equal(new Set(results.map((r) => r.session.sessionId)).size, 1);
        const c = await store.counters(A);
        assert.equal(c.total, 1);
        assert.equal(c.active, 1);
      });
    });
  });
}
