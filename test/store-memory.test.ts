/**
 * MemoryStore: the shared conformance suite, plus what only an injectable clock
 * can test quickly (archive retention).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { SessionError } from "../src/domain/errors.js";
import { CONFORMANCE_LIMITS, assertRejectsKind, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";

const openMemory = async (): Promise<{ store: MemoryStore; cleanup: () => Promise<void> }> => {
  const store = new MemoryStore({ limits: CONFORMANCE_LIMITS });
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("memory", openMemory);
runGuardConformance("memory", openMemory);

describe("MemoryStore with a manual clock", () => {
  function manualStore(start = 1_000_000): { store: MemoryStore; advance(ms: number): void } {
    let now = start;
    const store = new MemoryStore({ limits: CONFORMANCE_LIMITS, now: () => now });
    return { store, advance: (ms) => void (now += ms) };
  }

  const input = {
    tenant: "t",
    userId: "u",
    dataSource: "d",
    accessLevel: "write",
    ttlMs: 1_000,
    metadata: "{}",
    requestId: "",
  } as const;

  it("takes every time from its clock", async () => {
    const { store, advance } = manualStore(5_000);
    const { session } = await store.create(input);
    assert.equal(session.createTime, 5_000);
    assert.equal(session.expireTime, 6_000);
    advance(250);
    assert.equal((await store.extend("t", session.sessionId, 2_000)).expireTime, 7_250);
    advance(10);
    assert.equal((await store.close("t", session.sessionId)).endTime, 5_260);
  });

  it("keeps closed archives for archiveRetentionMs after endTime, then forgets them", async () => {
    const { store, advance } = manualStore();
    const { session } = await store.create(input);
    await store.close("t", session.sessionId);
    advance(CONFORMANCE_LIMITS.archiveRetentionMs - 1);
    assert.equal((await store.get("t", session.sessionId, { touch: false, includeEnded: true })).status, "closed");
    await assertRejectsKind(store.close("t", session.sessionId), "ended");
    advance(1);
    await assertRejectsKind(store.get("t", session.sessionId, { touch: false, includeEnded: true }), "not_found");
    await assertRejectsKind(store.close("t", session.sessionId), "not_found", "a forgotten session is unknown");
    assert.equal((await store.counters("t")).closed, 1, "forgetting the archive keeps the counters");
  });

  it("counts retention of an expired session from its expireTime, and expireDue drops old archives", async () => {
    const { store, advance } = manualStore();
    const a = (await store.create(input)).session;
    const b = (await store.create(input)).session;
    advance(input.ttlMs);
    const due = await store.expireDue(10);
    assert.deepEqual(due.map((r) => r.sessionId).sort(), [a.sessionId, b.sessionId].sort());
    assert.equal(due[0]?.endTime, a.expireTime);
    advance(CONFORMANCE_LIMITS.archiveRetentionMs);
    await store.expireDue(10);
    for (const s of [a, b]) {
      await assertRejectsKind(store.get("t", s.sessionId, { touch: false, includeEnded: true }), "not_found");
    }
  });

  it("a session is due exactly at its expireTime", async () => {
    const { store, advance } = manualStore();
    const { session } = await store.create(input);
    advance(input.ttlMs - 1);
    assert.equal((await store.get("t", session.sessionId, { touch: false, includeEnded: false })).status, "active");
    assert.equal((await store.list("t", {}, 10)).sessions.length, 1);
    advance(1);
    assert.equal((await store.list("t", {}, 10)).sessions.length, 0);
    await assertRejectsKind(store.get("t", session.sessionId, { touch: false, includeEnded: false }), "not_found");
  });

  it("returns frozen records, so callers cannot change stored state", async () => {
    const { store } = manualStore();
    const { session } = await store.create(input);
    assert.ok(Object.isFrozen(session));
  });

  it("rejects with unavailable after dispose", async () => {
    const { store } = manualStore();
    await store.dispose();
    await assert.rejects(store.ping(), (e: unknown) => e instanceof SessionError && e.kind === "unavailable");
  });
});
