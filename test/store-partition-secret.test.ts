/**
 * The partition secret (src/store/partition-secret.ts) on a partitioned
 * layout on one redis-server (16 partitions, as on a cluster): a user's
 * sessions stay in one partition across a key rotation (new key first,
 * restart, `npm run reencrypt`, old key removed), so listing by user and
 * MAX_SESSIONS_PER_USER see every one of them, and Redis holds no user id;
 * the secret is made once by concurrent first starts, restored where a
 * partition lost its copy, refused when missing over data or not openable,
 * and not made at all with one partition or without encryption.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KeyedFieldCipher, PLAINTEXT_CIPHER, sealedKeyId, type FieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { StartError } from "../src/startup/start-error.js";
import { Partitioning, partitionSecretKey } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { openSealedStore } from "../src/store/sealed-store.js";
import type { SessionStore, StoreLimits } from "../src/store/store.js";
import { reencrypt } from "../src/tools/reencrypt.js";
import { assertRejectsKind, CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";
import { rawDump } from "./support/raw-dump.js";
import { useRedisServer } from "./support/redis-server.js";

const server = useRedisServer();
const PREFIX = "sdps:";
const PARTITIONS = 16;
const K1 = `k1:${Buffer.alloc(32, 1).toString("base64")}`;
const K2 = `k2:${Buffer.alloc(32, 2).toString("base64")}`;
const K3 = `k3:${Buffer.alloc(32, 3).toString("base64")}`;
const PER_USER = 6;
const LIMITS: StoreLimits = { ...CONFORMANCE_LIMITS, maxSessionsPerUser: PER_USER, sessionsPerUserPolicy: "reject" };
/**
 * Users whose tokens under k1 and k2 fall in different partitions (checked below): main's placement split them. Their
 * local parts are long, so the raw dump's random bytes never spell one by chance.
 */
const USERS = ["alice.liddell@example.com", "bobby.tables@example.com", "carol.danvers@example.com", "dave.bowman@example.com"];
const TENANT = "acme";

const cipherOf = (keys: string): KeyedFieldCipher => new KeyedFieldCipher(parseKeyring(keys));
const secretKeys = (): string[] => new Partitioning(PARTITIONS).tags.map((tag) => partitionSecretKey(PREFIX, tag));

/** A store as the service opens it: the Redis store behind the sealing wrapper, the secret opened. */
async function open(cipher: FieldCipher, partitions = PARTITIONS): Promise<{ store: SessionStore; inner: RedisStore }> {
  const inner = new RedisStore({ url: server.url, keyPrefix: PREFIX, partitions, limits: LIMITS, commandTimeoutMs: 5000 });
  try {
    return { store: await openSealedStore(inner, cipher), inner };
  } catch (error) {
    await inner.dispose();
    throw error;
  }
}

async function withStore<T>(cipher: FieldCipher, fn: (store: SessionStore) => Promise<T>, partitions = PARTITIONS): Promise<T> {
  const { store } = await open(cipher, partitions);
  try {
    return await fn(store);
  } finally {
    await store.dispose();
  }
}

const create = async (store: SessionStore, userId: string, i: number): Promise<string> =>
  (await store.create({ tenant: TENANT, userId, dataSource: `src-${i}`, accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" })).session.sessionId;

describe("the partition secret on a partitioned layout", () => {
  it("a key rotation leaves every user in their partition: listing by user and MAX_SESSIONS_PER_USER see all their sessions, Redis holds no user id", async () => {
    await server.raw.flushall();
    // Without the secret, each user's token under k1 and under k2 decided the partition: these users were split.
    const partitioning = new Partitioning(PARTITIONS);
    const tokenPartition = (keys: string, user: string): number => partitioning.ofUser(TENANT, (cipherOf(keys).indexNames(user, { tenant: TENANT, kind: "user" })[0] ?? "").slice(0, 22));
    assert.ok(USERS.every((u) => tokenPartition(K1, u) !== tokenPartition(K2, u)), "the users' tokens change partition with the key");

    const ids = new Map<string, string[]>(USERS.map((u) => [u, []]));
    const add = async (store: SessionStore, count: number): Promise<void> => {
      for (const user of USERS) for (let i = 0; i < count; i++) ids.get(user)?.push(await create(store, user, i));
    };
    await withStore(cipherOf(K1), (store) => add(store, 3));
    // The new key first, the service restarted: new sessions next to the old ones.
    await withStore(cipherOf(`${K2},${K1}`), (store) => add(store, 1));
    const report = await reencrypt({ redis: server.raw, keyPrefix: PREFIX, keyring: parseKeyring(`${K2},${K1}`), partitions: PARTITIONS });
    assert.equal(report.failed, 0);
    assert.equal(report.partitionSecret, "resealed");
    for (const key of secretKeys()) assert.equal(sealedKeyId((await server.raw.get(key)) ?? ""), "k2", `${key} resealed under the new primary key`);

    // The old key removed.
    await withStore(cipherOf(K2), async (store) => {
      await add(store, 2);
      for (const user of USERS) {
        const listed = await store.list(TENANT, { userId: user }, 100);
        assert.deepEqual(new Set(listed.sessions.map((s) => s.sessionId)), new Set(ids.get(user)), `${user}: every session listed`);
        assert.equal(listed.sessions.length, PER_USER);
        // The cap counts the sessions made before the rotation too.
        await assertRejectsKind(create(store, user, 99), "limit_exceeded");
      }
      const byUser = await store.list(TENANT, { userId: USERS[0] ?? "" }, 2);
      assert.equal(byUser.sessions.length, 2, "paged by user");
      assert.ok(byUser.next !== undefined);
    });

    const dump = await rawDump(server.raw);
    for (const user of USERS) {
      assert.ok(!dump.includes(user), "no user id in Redis");
      assert.ok(!dump.includes(user.split("@")[0] ?? user), "no part of a user id in Redis");
    }
  });

  it("concurrent first starts agree on one secret, stored sealed in every partition", async () => {
    await server.raw.flushall();
    const opened = await Promise.all(Array.from({ length: 4 }, () => open(cipherOf(K1))));
    try {
      const copies = await Promise.all(secretKeys().map((k) => server.raw.get(k)));
      assert.ok(copies.every((c) => c !== null && sealedKeyId(c) === "k1"), "a sealed copy in every partition");
      // Every process places a user in the same partition: the sessions one made are listed by all.
      const made = await Promise.all(opened.map(({ store }, i) => create(store, "erin", i)));
      for (const { store } of opened) assert.deepEqual(new Set((await store.list(TENANT, { userId: "erin" }, 100)).sessions.map((s) => s.sessionId)), new Set(made));
    } finally {
      await Promise.all(opened.map(({ store }) => store.dispose()));
    }
  });

  it("a partition that lost its copy gets it back from the others; with every copy gone over data the start is refused, as with copies no key opens", async () => {
    await server.raw.flushall();
    const before = await withStore(cipherOf(K1), async (store) => [await create(store, "frank", 0)]);
    const [lost, ...kept] = secretKeys();
    await server.raw.del(lost ?? "");
    await withStore(cipherOf(K1), async (store) => {
      before.push(await create(store, "frank", 1));
      assert.deepEqual(new Set((await store.list(TENANT, { userId: "frank" }, 100)).sessions.map((s) => s.sessionId)), new Set(before));
    });
    assert.notEqual(await server.raw.get(lost ?? ""), null, "the lost copy restored");

    // Copies that no configured key opens: refused, naming the key, never a value.
    await assert.rejects(open(cipherOf(K3)), (e: unknown) => e instanceof StartError && e.message.includes(`${lost}`) && e.message.includes("ENCRYPTION_KEYS"));

    // Every copy gone while the layout holds data: refused, never a new secret.
    await server.raw.del(lost ?? "", ...kept);
    await assert.rejects(open(cipherOf(K1)), (e: unknown) => e instanceof StartError && e.message.includes("no partition secret") && e.message.includes("npm run reencrypt"));
    for (const key of secretKeys()) assert.equal(await server.raw.get(key), null, "nothing written");
    // The documented way out makes one.
    assert.equal((await reencrypt({ redis: server.raw, keyPrefix: PREFIX, keyring: parseKeyring(K1), partitions: PARTITIONS })).partitionSecret, "created");
    await withStore(cipherOf(K1), async (store) => assert.equal((await store.get(TENANT, before[0] ?? "", { touch: false, includeEnded: false })).userId, "frank"));

    // Redis lost everything: nothing to orphan, so a new secret is made.
    await server.raw.flushall();
    await withStore(cipherOf(K3), async (store) => assert.equal((await store.list(TENANT, { userId: "frank" }, 10)).sessions.length, 0));
    assert.equal(sealedKeyId((await server.raw.get(lost ?? "")) ?? ""), "k3");
  });

  it("one partition, or encryption off: no secret, placement as before", async () => {
    await server.raw.flushall();
    await withStore(cipherOf(K1), async (store) => {
      const id = await create(store, "gina", 0);
      assert.deepEqual((await store.list(TENANT, { userId: "gina" }, 10)).sessions.map((s) => s.sessionId), [id]);
    }, 1);
    await withStore(PLAINTEXT_CIPHER, async (store) => {
      const id = await create(store, "gina", 1);
      assert.deepEqual((await store.list(TENANT, { userId: "gina" }, 10)).sessions.map((s) => s.sessionId), [id]);
    });
    assert.deepEqual(await server.raw.keys(`${PREFIX}*ps`), [], "no secret written");
  });
});
