/**
 * Store conformance for SessionGuard (a caller acting for one user, see
 * src/store/store.ts and src/session/access-policy.ts), run unchanged against
 * every backend next to the main suite: another user's session, live or
 * ended, is not_found exactly like an unknown one and is left untouched; the
 * user's own session answers as its access level allows; a guarded create
 * stays with its user, request ids included; and a guarded write is checked
 * in the same atomic step as it is applied.
 */
import { afterEach, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { SessionRecord } from "../../src/domain/model.js";
import type { CreateSessionInput, SessionGuard, SessionStore, StoredEvent } from "../../src/store/store.js";
import { assertRejectsKind, type OpenedStore } from "./store-conformance.js";

const T = "tenant-g";
const OWNER = "alice";
const OTHER = "bob";
const NO_TOUCH = { touch: false, includeEnded: false } as const;
const MISSING = "00000000-0000-4000-8000-000000000000";

export function runGuardConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(`SessionStore conformance, guarded calls: ${name}`, () => {
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
      return { tenant: T, userId: OWNER, dataSource: "web", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "", ...overrides };
    }

    async function create(overrides: Partial<CreateSessionInput> = {}): Promise<SessionRecord> {
      return (await store.create(input(overrides))).session;
    }

    const as = (userId: string, level: SessionGuard["level"] = "read"): SessionGuard => ({ userId, level });

    async function events(): Promise<StoredEvent[]> {
      return store.readEvents("0-0", 10_000);
    }

    /** Every guarded operation on `id` as `user`, each expected to fail with `kind`. */
    async function assertEveryOperation(id: string, user: string, kind: "not_found", why: string): Promise<void> {
      await assertRejectsKind(store.get(T, id, { touch: true, includeEnded: false, guard: as(user) }), kind, `${why}: get`);
      await assertRejectsKind(store.get(T, id, { touch: true, includeEnded: true, guard: as(user) }), kind, `${why}: get includeEnded`);
      await assertRejectsKind(store.update(T, id, { metadata: '{"x":1}' }, undefined, as(user, "write")), kind, `${why}: update`);
      await assertRejectsKind(store.update(T, id, { accessLevel: "admin" }, 1, as(user, "admin")), kind, `${why}: update level`);
      await assertRejectsKind(store.extend(T, id, 1_000, as(user)), kind, `${why}: extend`);
      await assertRejectsKind(store.close(T, id, as(user)), kind, `${why}: close`);
      await assertRejectsKind(store.setData(T, id, "k", '"v"', as(user, "write")), kind, `${why}: setData`);
      await assertRejectsKind(store.getData(T, id, "k", as(user)), kind, `${why}: getData`);
      await assertRejectsKind(store.deleteData(T, id, "k", as(user, "write")), kind, `${why}: deleteData`);
      await assertRejectsKind(store.listData(T, id, true, as(user)), kind, `${why}: listData`);
      await assertRejectsKind(store.clearData(T, id, as(user, "write")), kind, `${why}: clearData`);
    }

    it("another user's live session is not_found for every operation, as an unknown one is, and stays unchanged", async () => {
      const s = await create({ accessLevel: "admin" });
      await store.setData(T, s.sessionId, "k", '"v"');
      const before = await store.get(T, s.sessionId, NO_TOUCH);
      const eventsBefore = await events();

      await assertEveryOperation(s.sessionId, OTHER, "not_found", "other user");
      await assertEveryOperation(MISSING, OTHER, "not_found", "unknown session");

      assert.deepEqual(await store.get(T, s.sessionId, NO_TOUCH), before, "record (version, access time) unchanged");
      assert.equal(await store.getData(T, s.sessionId, "k"), '"v"');
      assert.deepEqual(await events(), eventsBefore, "no event was written");
    });

    it("another user's ended session is not_found (not ended), with or without includeEnded", async () => {
      const s = await create();
      await store.close(T, s.sessionId);
      await assertEveryOperation(s.sessionId, OTHER, "not_found", "other user's ended session");
      // The owner still sees it as ended.
      assert.equal((await store.get(T, s.sessionId, { touch: false, includeEnded: true, guard: as(OWNER) })).status, "closed");
      await assertRejectsKind(store.update(T, s.sessionId, { metadata: "{}" }, undefined, as(OWNER, "write")), "ended");
      await assertRejectsKind(store.close(T, s.sessionId, as(OWNER)), "ended");
    });

    it("another user's session met after its expire time is archived as expired all the same, and stays not_found to the other user", async () => {
      const s = await create({ ttlMs: 200 });
      await sleep(300);
      await assertRejectsKind(store.get(T, s.sessionId, { touch: true, includeEnded: true, guard: as(OTHER) }), "not_found", "due, other user");
      const ended = await store.get(T, s.sessionId, { touch: false, includeEnded: true, guard: as(OWNER) });
      assert.equal(ended.status, "expired", "the owner sees the expiry the other user's call performed");
      await assertRejectsKind(store.extend(T, s.sessionId, 1_000, as(OWNER)), "ended");
    });

    it("the owner reads, extends and closes at every level; writes data and metadata from write; changes level and data source only at admin", async () => {
      const read = await create({ accessLevel: "read" });
      const write = await create({ accessLevel: "write" });
      const admin = await create({ accessLevel: "admin" });

      for (const s of [read, write, admin]) {
        assert.equal((await store.get(T, s.sessionId, { touch: true, includeEnded: false, guard: as(OWNER) })).sessionId, s.sessionId);
        assert.equal(await store.getData(T, s.sessionId, "absent", as(OWNER)), undefined);
        assert.deepEqual([...(await store.listData(T, s.sessionId, true, as(OWNER))).keys()], []);
        assert.ok((await store.extend(T, s.sessionId, 300_000, as(OWNER))).version > s.version);
      }

      const versionBefore = (await store.get(T, read.sessionId, NO_TOUCH)).version;
      await assertRejectsKind(store.setData(T, read.sessionId, "k", '"v"', as(OWNER, "write")), "permission_denied", "data write on read");
      await assertRejectsKind(store.deleteData(T, read.sessionId, "k", as(OWNER, "write")), "permission_denied");
      await assertRejectsKind(store.clearData(T, read.sessionId, as(OWNER, "write")), "permission_denied");
      await assertRejectsKind(store.update(T, read.sessionId, { metadata: '{"a":1}' }, undefined, as(OWNER, "write")), "permission_denied", "metadata on read");
      assert.equal((await store.get(T, read.sessionId, NO_TOUCH)).version, versionBefore, "refused writes changed nothing");

      assert.ok((await store.setData(T, write.sessionId, "k", '"v"', as(OWNER, "write"))).version > write.version);
      const updated = await store.update(T, write.sessionId, { metadata: '{"a":1}' }, undefined, as(OWNER, "write"));
      assert.equal(updated.metadata, '{"a":1}');
      await assertRejectsKind(store.update(T, write.sessionId, { accessLevel: "admin" }, undefined, as(OWNER, "admin")), "permission_denied", "level on write");
      await assertRejectsKind(store.update(T, write.sessionId, { dataSource: "app" }, undefined, as(OWNER, "admin")), "permission_denied", "data source on write");
      // The guard's check comes before expected_version: a refused caller learns nothing about versions.
      await assertRejectsKind(store.update(T, write.sessionId, { accessLevel: "admin" }, 999, as(OWNER, "admin")), "permission_denied");
      assert.equal((await store.get(T, write.sessionId, NO_TOUCH)).accessLevel, "write");

      const lowered = await store.update(T, admin.sessionId, { accessLevel: "read", dataSource: "app" }, undefined, as(OWNER, "admin"));
      assert.equal(lowered.accessLevel, "read");
      assert.equal(lowered.dataSource, "app");

      for (const s of [read, write]) assert.equal((await store.close(T, s.sessionId, as(OWNER))).status, "closed");
    });

    it("a guarded create is for the guard's user only, and its request id is that user's", async () => {
      await assertRejectsKind(store.create(input({ userId: OTHER, guard: as(OWNER) })), "permission_denied", "create for another user");
      assert.equal((await store.counters(T)).total, 0, "the refused create made nothing");

      const bobs = await store.create(input({ userId: OTHER, requestId: "req-1" }));
      const mine = await store.create(input({ requestId: "req-1", guard: as(OWNER) }));
      assert.equal(mine.created, true, "another user's request id does not answer a guarded create");
      assert.equal(mine.session.userId, OWNER);
      assert.notEqual(mine.session.sessionId, bobs.session.sessionId);

      const retry = await store.create(input({ requestId: "req-1", guard: as(OWNER) }));
      assert.equal(retry.created, false);
      assert.equal(retry.session.sessionId, mine.session.sessionId, "a guarded retry finds its own session");
      const bobsRetry = await store.create(input({ userId: OTHER, requestId: "req-1" }));
      assert.equal(bobsRetry.session.sessionId, bobs.session.sessionId, "the other user's request id still answers its retries");

      await store.close(T, mine.session.sessionId);
      assert.equal((await store.create(input({ requestId: "req-1", guard: as(OWNER) }))).created, true, "closing frees the user's request id");
    });

    it("the guard is checked in the same step as the write: no metadata write lands after the level dropped to read", async () => {
      const sessions = await Promise.all(Array.from({ length: 20 }, () => create({ accessLevel: "write" })));
      const results = await Promise.allSettled(
        sessions.flatMap((s) => [
          store.update(T, s.sessionId, { accessLevel: "read" }),
          store.update(T, s.sessionId, { metadata: '{"late":true}' }, undefined, as(OWNER, "write")),
        ]),
      );
      for (const r of results) {
        if (r.status === "rejected") assert.equal((r.reason as { kind?: string }).kind, "permission_denied");
      }
      for (const e of await events()) {
        if (e.type === "updated" && e.session.metadata === '{"late":true}') {
          assert.equal(e.session.accessLevel, "write", "a guarded metadata write was applied only while the level allowed it");
        }
      }
      for (const s of sessions) {
        const now = await store.get(T, s.sessionId, NO_TOUCH);
        assert.equal(now.accessLevel, "read");
      }
    });
  });
}
