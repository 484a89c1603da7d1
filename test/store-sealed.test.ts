/**
 * The sealing wrapper (src/store/sealed-store.ts) over both backends: the
 * shared conformance suites through it (identifiers as keyed HMACs, names
 * sealed beside them behave exactly like plain ones), with a keyring that
 * has a rotated key in it so that every lookup also meets its aliases.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyedFieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { SealedStore } from "../src/store/sealed-store.js";
import type { ListFilter } from "../src/store/store.js";
import { assertRejectsKind, CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const KEYS = `k2:${Buffer.alloc(32, 2).toString("base64")},k1:${Buffer.alloc(32, 1).toString("base64")}`;
const cipher = new KeyedFieldCipher(parseKeyring(KEYS));

const openMemory = async (): Promise<{ store: SealedStore; cleanup: () => Promise<void> }> => {
  const store = new SealedStore(new MemoryStore({ limits: CONFORMANCE_LIMITS }), cipher);
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("sealed memory", openMemory);
runGuardConformance("sealed memory", openMemory);

const server = useRedisServer();
const openRedis = async (): Promise<{ store: SealedStore; cleanup: () => Promise<void> }> => {
  await server.raw.flushall();
  const store = new SealedStore(new RedisStore({ url: server.url, keyPrefix: "sdsealed:", limits: CONFORMANCE_LIMITS, commandTimeoutMs: 2000 }), cipher);
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("sealed redis", openRedis);
runGuardConformance("sealed redis", openRedis);

describe("SealedStore across a key rotation (sessions written under the old key's tokens)", () => {
  const oldKey = `k1:${Buffer.alloc(32, 1).toString("base64")}`;
  const newKey = `k2:${Buffer.alloc(32, 2).toString("base64")}`;

  it("finds them by user, data source and data key, guards them, writes replace the old token's entry, metrics name them once", async () => {
    const inner = new MemoryStore({ limits: CONFORMANCE_LIMITS });
    const before = new SealedStore(inner, new KeyedFieldCipher(parseKeyring(oldKey)));
    const input = { tenant: "t", userId: "alice", dataSource: "crm", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" } as const;
    const old = (await before.create(input)).session.sessionId;
    await before.setData("t", old, "k", "e1:x:old");

    const after = new SealedStore(inner, new KeyedFieldCipher(parseKeyring(`${newKey},${oldKey}`)));
    const fresh = (await after.create(input)).session.sessionId;
    const ids = (filter: ListFilter): Promise<string[]> => after.list("t", filter, 10).then((r) => r.sessions.map((s) => s.sessionId).sort());
    assert.deepEqual(await ids({ userId: "alice" }), [old, fresh].sort());
    assert.deepEqual(await ids({ dataSource: "crm" }), [old, fresh].sort());
    assert.deepEqual(await ids({ userId: "alice", dataSource: "crm" }), [old, fresh].sort());
    // Pages of one walk both tokens' indexes in order.
    const first = await after.list("t", { userId: "alice" }, 1);
    assert.ok(first.next !== undefined);
    const second = await after.list("t", { userId: "alice" }, 1, first.next);
    assert.deepEqual([...first.sessions, ...second.sessions].map((s) => s.sessionId).sort(), [old, fresh].sort());
    assert.equal((await after.get("t", old, { touch: false, includeEnded: false, guard: { userId: "alice", level: "read" } })).userId, "alice");
    await assertRejectsKind(after.get("t", old, { touch: false, includeEnded: false, guard: { userId: "bob", level: "read" } }), "not_found");

    assert.equal(await after.getData("t", old, "k"), "e1:x:old");
    await after.setData("t", old, "k", "e1:x:new");
    assert.deepEqual([...(await after.listData("t", old, true))], [["k", "e1:x:new"]], "one entry: the old token's went with the write");
    assert.equal((await after.deleteData("t", old, "k")).deleted, true);
    assert.equal(await after.getData("t", old, "k"), undefined);

    assert.deepEqual((await after.counters("t")).activeByDataSource, { crm: 2 });
  });
});
