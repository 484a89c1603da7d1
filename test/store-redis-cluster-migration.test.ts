/**
 * Every write script of RedisStore on a real Redis Cluster while its
 * partition's slot is half moved, set up by hand so that it is deterministic:
 * the slot is put in MIGRATING / IMPORTING state and exactly one key of the
 * session's partition is moved to the importing node first: one the script
 * writes after others, or the generation key (scripts then go to the
 * importing node by ASK, where the session's keys are not yet). The call must
 * write nothing while the slot moves (Redis refuses it, the store sends it
 * again), and once the migration is finished (the other keys moved, CLUSTER
 * SETSLOT NODE) succeed with the state of one Redis: record, indexes,
 * counters and exactly one event.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { keySlot, Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { SessionCounters } from "../src/store/store.js";
import { useRedisCluster, type ClusterNode } from "./support/redis-cluster.js";
import { entryFields } from "./support/event-entries.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
const PARTITIONS = 3;
const PREFIX = "mv:";
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 600_000, expiryGraceMs: 600_000, eventRetentionCount: 100_000 };
const partitions = new Partitioning(PARTITIONS);

function openStore(): RedisStore {
  const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  // A long deadline: the call keeps being refused and sent again while the test finishes the migration.
  return new RedisStore({ url: "", cluster: { nodes }, keyPrefix: PREFIX, partitions: PARTITIONS, limits: LIMITS, commandTimeoutMs: 60_000 });
}

async function withClient<T>(node: ClusterNode, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = cluster().client(node);
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

/** A partition's slot half moved from its primary to another one, by the steps `redis-cli --cluster reshard` takes. */
interface SlotMove {
  /** Every key of the slot on both nodes: its DUMP and expiry (what a write would change). */
  snapshot(): Promise<Map<string, string>>;
  /** ERR replies both nodes have sent so far (a refused script's; not ASK, MOVED or NOSCRIPT). */
  errors(): Promise<number>;
  /** Moves the remaining keys and hands the slot to the target on every primary. */
  finish(): Promise<void>;
}

async function openSlotMove(partition: number, firstKey: string): Promise<SlotMove> {
  const slot = keySlot((partitions.tags[partition] as string).slice(1, -1));
  const source = await cluster().primaryOf(slot);
  const primaries = await cluster().primaries();
  const target = primaries.find((n) => n.port !== source.port) as ClusterNode;
  const id = (node: ClusterNode): Promise<string> => withClient(node, async (r) => String(await r.call("CLUSTER", "MYID")));
  const [sourceId, targetId] = [await id(source), await id(target)];
  await withClient(target, (r) => r.call("CLUSTER", "SETSLOT", slot, "IMPORTING", sourceId));
  await withClient(source, (r) => r.call("CLUSTER", "SETSLOT", slot, "MIGRATING", targetId));
  const migrate = (keys: readonly string[]): Promise<unknown> =>
    withClient(source, (r) => r.call("MIGRATE", "127.0.0.1", target.port, "", 0, 10_000, "KEYS", ...keys));
  assert.equal(await withClient(source, (r) => r.exists(firstKey)), 1, "the key to move exists");
  await migrate([firstKey]);
  const keysOf = (node: ClusterNode): Promise<string[]> => withClient(node, async (r) => (await r.call("CLUSTER", "GETKEYSINSLOT", slot, 100_000)) as string[]);
  return {
    snapshot: async () => {
      const out = new Map<string, string>();
      for (const node of [source, target]) {
        await withClient(node, async (r) => {
          for (const key of (await r.call("CLUSTER", "GETKEYSINSLOT", slot, 100_000)) as string[]) {
            // The importing node serves a key of the slot only to a command after ASKING.
            await r.call("ASKING");
            const dump = await r.dumpBuffer(key);
            await r.call("ASKING");
            out.set(key, `${node.port} ${dump?.toString("hex") ?? "gone"} ${String(await r.call("PEXPIRETIME", key))}`);
          }
        });
      }
      return out;
    },
    errors: async () => {
      let sum = 0;
      for (const node of [source, target]) sum += await withClient(node, async (r) => Number(/errorstat_ERR:count=(\d+)/.exec(await r.info("errorstats"))?.[1] ?? 0));
      return sum;
    },
    finish: async () => {
      for (let keys = await keysOf(source); keys.length > 0; keys = await keysOf(source)) await migrate(keys);
      for (const node of [target, source, ...primaries.filter((n) => n !== source && n !== target)]) {
        await withClient(node, (r) => r.call("CLUSTER", "SETSLOT", slot, "NODE", targetId));
      }
    },
  };
}

/** Polls `check` until it holds (a busy machine: no fixed sleeps), failing after `boundMs`. */
async function waitFor(what: string, check: () => Promise<boolean>, boundMs = 30_000): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Events of a session in its partition's log after `after` (entry ids), as [kind, version]. */
async function eventsOf(keys: RedisKeys, partition: number, sessionId: string, after: string): Promise<[string, string][]> {
  const node = await cluster().primaryOf(keySlot((partitions.tags[partition] as string).slice(1, -1)));
  const entries = (await withClient(node, (r) => r.xrange(keys.events(partition), `(${after}`, "+"))) as [string, string[]][];
  const out: [string, string][] = [];
  for (const [, fields] of entries) {
    const f = entryFields(fields);
    if (f.get("i") === sessionId) out.push([f.get("k") as string, f.get("v") as string]);
  }
  return out;
}

async function lastEntry(keys: RedisKeys, partition: number): Promise<string> {
  const node = await cluster().primaryOf(keySlot((partitions.tags[partition] as string).slice(1, -1)));
  const last = (await withClient(node, (r) => r.xrevrange(keys.events(partition), "+", "-", "COUNT", 1))) as [string, string[]][];
  return last[0]?.[0] ?? "0-0";
}

async function listed(store: RedisStore, tenant: string, filter: { userId?: string; dataSource?: string }): Promise<string[]> {
  return (await store.list(tenant, filter, 100)).sessions.map((s) => s.sessionId).sort();
}

const READ = { touch: false, includeEnded: true } as const;

function counts(c: SessionCounters): { total: number; active: number; expired: number; closed: number } {
  return { total: c.total, active: c.active, expired: c.expired, closed: c.closed };
}

interface Case {
  readonly op: string;
  /** The key moved first: one the script writes after other writes. */
  readonly moved: (keys: RedisKeys, userId: string, partition: number) => string;
  /** The setup session's TTL (short for expiry). */
  readonly ttlMs?: number;
  readonly run: (store: RedisStore, tenant: string, sessionId: string) => Promise<unknown>;
  /** Checks the state after the call; `before` is the session's record before it. */
  readonly check: (s: { store: RedisStore; tenant: string; userId: string; sessionId: string; sibling: string; result: unknown; events: [string, string][]; eventsOf: (sessionId: string) => Promise<[string, string][]>; before: SessionCounters; after: SessionCounters }) => Promise<void>;
}

const CASES: readonly Case[] = [
  {
    op: "create (idempotent, the user index moved)",
    moved: (keys, userId) => keys.userIndex(userId),
    run: (store, tenant) => store.create({ tenant, userId: "u", dataSource: "ds-a", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "rid-new" }),
    check: async ({ store, tenant, sessionId, sibling, result, eventsOf, before, after }) => {
      const { created, session } = result as { created: boolean; session: { sessionId: string; version: number } };
      assert.equal(created, true);
      assert.equal(session.version, 1);
      assert.deepEqual(await listed(store, tenant, { userId: "u" }), [sessionId, sibling, session.sessionId].sort());
      assert.deepEqual(await listed(store, tenant, { dataSource: "ds-a" }), [sessionId, sibling, session.sessionId].sort());
      assert.deepEqual(counts(after), { ...counts(before), total: before.total + 1, active: before.active + 1 });
      assert.deepEqual(await eventsOf(session.sessionId), [["created", "1"]]);
      const again = await store.create({ tenant, userId: "u", dataSource: "ds-a", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "rid-new" });
      assert.deepEqual([again.created, again.session.sessionId], [false, session.sessionId], "the request id answers a retry");
    },
  },
  {
    op: "update (the tenant's last-event key moved)",
    moved: (keys, _u, p) => keys.lastEvent(p),
    run: (store, tenant, sid) => store.update(tenant, sid, { metadata: '{"n":1}', accessLevel: "admin", dataSource: "ds-b" }),
    check: async ({ store, tenant, sessionId, sibling, events, before, after }) => {
      const rec = await store.get(tenant, sessionId, READ);
      assert.deepEqual([rec.version, rec.metadata, rec.accessLevel, rec.dataSource], [3, '{"n":1}', "admin", "ds-b"]);
      assert.deepEqual(await listed(store, tenant, { dataSource: "ds-b" }), [sessionId]);
      assert.deepEqual(await listed(store, tenant, { dataSource: "ds-a" }), [sibling]);
      assert.deepEqual(counts(after), counts(before));
      assert.deepEqual([after.activeByDataSource, after.activeByAccessLevel], [{ "ds-a": 1, "ds-b": 1 }, { write: 1, admin: 1 }]);
      assert.deepEqual(events, [["updated", "3"]]);
    },
  },
  {
    op: "get (the generation key moved: the script is sent to the importing node, the record is not there yet)",
    moved: (keys, _u, p) => keys.generation(p),
    run: (store, tenant, sid) => store.get(tenant, sid, READ),
    check: async ({ sessionId, result, events }) => {
      const rec = result as { sessionId: string; version: number; status: string };
      assert.deepEqual([rec.sessionId, rec.version, rec.status], [sessionId, 2, "active"]);
      assert.deepEqual(events, []);
    },
  },
  {
    op: "close (the generation key moved: the script is sent to the importing node)",
    moved: (keys, _u, p) => keys.generation(p),
    run: (store, tenant, sid) => store.close(tenant, sid),
    check: async ({ store, tenant, sessionId, sibling, events, before, after }) => {
      assert.deepEqual(await listed(store, tenant, {}), [sibling]);
      assert.deepEqual(counts(after), { ...counts(before), active: before.active - 1, closed: before.closed + 1 });
      assert.deepEqual(events, [["closed", "3"]]);
    },
  },
  {
    op: "extend (the user index moved)",
    moved: (keys, userId) => keys.userIndex(userId),
    run: (store, tenant, sid) => store.extend(tenant, sid, 900_000),
    check: async ({ store, tenant, sessionId, sibling, events, before, after }) => {
      const rec = await store.get(tenant, sessionId, READ);
      assert.equal(rec.version, 3);
      assert.ok(rec.expireTime - rec.createTime >= 900_000 - 60_000, "the new expire time is stored");
      const byUser = (await store.list(tenant, { userId: "u" }, 100)).sessions;
      assert.deepEqual(byUser.map((s) => s.sessionId), [sibling, sessionId], "the user index holds the new expire time (order)");
      assert.deepEqual(counts(after), counts(before));
      assert.deepEqual(events, [["extended", "3"]]);
    },
  },
  {
    op: "close (the user index moved)",
    moved: (keys, userId) => keys.userIndex(userId),
    run: (store, tenant, sid) => store.close(tenant, sid),
    check: async ({ store, tenant, sessionId, sibling, events, before, after }) => {
      const rec = await store.get(tenant, sessionId, READ);
      assert.deepEqual([rec.status, rec.version], ["closed", 3]);
      assert.deepEqual(await listed(store, tenant, { userId: "u" }), [sibling]);
      assert.deepEqual(await listed(store, tenant, {}), [sibling]);
      assert.deepEqual(counts(after), { ...counts(before), active: before.active - 1, closed: before.closed + 1 });
      assert.deepEqual(events, [["closed", "3"]]);
    },
  },
  {
    op: "set data (the tenant's last-event key moved)",
    moved: (keys, _u, p) => keys.lastEvent(p),
    run: (store, tenant, sid) => store.setData(tenant, sid, "k2", "v2"),
    check: async ({ store, tenant, sessionId, events }) => {
      assert.deepEqual([...(await store.listData(tenant, sessionId, true)).entries()].sort(), [["k", "v"], ["k2", "v2"]]);
      assert.equal((await store.get(tenant, sessionId, READ)).version, 3);
      assert.deepEqual(events, [["data_changed", "3"]]);
    },
  },
  {
    op: "delete data (the tenant's last-event key moved)",
    moved: (keys, _u, p) => keys.lastEvent(p),
    run: (store, tenant, sid) => store.deleteData(tenant, sid, "k"),
    check: async ({ store, tenant, sessionId, events }) => {
      assert.equal((await store.listData(tenant, sessionId, true)).size, 0);
      assert.equal((await store.get(tenant, sessionId, READ)).version, 3);
      assert.deepEqual(events, [["data_changed", "3"]]);
    },
  },
  {
    op: "clear data (the tenant's last-event key moved)",
    moved: (keys, _u, p) => keys.lastEvent(p),
    run: (store, tenant, sid) => store.clearData(tenant, sid),
    check: async ({ store, tenant, sessionId, result, events }) => {
      assert.equal((result as { deletedCount: number }).deletedCount, 1);
      assert.equal((await store.listData(tenant, sessionId, true)).size, 0);
      assert.equal((await store.get(tenant, sessionId, READ)).version, 3);
      assert.deepEqual(events, [["data_changed", "3"]]);
    },
  },
  {
    op: "expire (the tenant-wide index moved)",
    moved: (keys, _u, p) => keys.allDirectory(p),
    ttlMs: 1000,
    run: (store) => store.expireDue(100),
    check: async ({ store, tenant, sessionId, sibling, result, events, before, after }) => {
      assert.deepEqual((result as { sessionId: string }[]).map((r) => r.sessionId), [sessionId]);
      const rec = await store.get(tenant, sessionId, READ);
      assert.deepEqual([rec.status, rec.version], ["expired", 3]);
      assert.deepEqual(await listed(store, tenant, {}), [sibling]);
      assert.deepEqual(await listed(store, tenant, { userId: "u" }), [sibling]);
      assert.deepEqual(counts(after), { ...counts(before), active: before.active - 1, expired: before.expired + 1 });
      assert.deepEqual(events, [["expired", "3"]]);
    },
  },
];

describe("RedisStore on a Redis Cluster: a call while its slot migrates writes nothing, then succeeds once", () => {
  for (const [n, c] of CASES.entries()) {
    it(c.op, async () => {
      const store = openStore();
      let move: SlotMove | undefined;
      try {
        const tenant = `t${n}`;
        const keys = new RedisKeys(PREFIX, tenant, partitions);
        const partition = partitions.ofUser(tenant, "u");
        const base = { tenant, userId: "u", dataSource: "ds-a", accessLevel: "write" as const, metadata: "{}" };
        const sibling = (await store.create({ ...base, ttlMs: 600_000, requestId: "rid-sibling" })).session.sessionId;
        const { session } = await store.create({ ...base, ttlMs: c.ttlMs ?? 300_000, requestId: "rid-setup" });
        await store.setData(tenant, session.sessionId, "k", "v");
        if (c.ttlMs !== undefined) await waitFor("the session to be due", async () => Date.now() > session.expireTime + 50);
        const before = await store.counters(tenant);
        const start = await lastEntry(keys, partition);

        const moving = await openSlotMove(partition, c.moved(keys, "u", partition));
        move = moving;
        const unchanged = await moving.snapshot();
        const errors = await moving.errors();
        let settled = false;
        const call = c.run(store, tenant, session.sessionId).then(
          (value) => ({ ok: true as const, value }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        void call.then(() => (settled = true));
        // Refused at least twice (sent again after a refusal), and still waiting.
        await waitFor("the script to be refused", async () => (await moving.errors()) >= errors + 2 || settled);
        assert.equal(settled, false, "the call waits while the slot moves");
        assert.deepEqual(await moving.snapshot(), unchanged, "nothing was written while the slot moves");
        await moving.finish();
        move = undefined;
        const outcome = await call;
        if (!outcome.ok) throw outcome.error;
        const after = await store.counters(tenant);
        const events = (sessionId: string): Promise<[string, string][]> => eventsOf(keys, partition, sessionId, start);
        await c.check({ store, tenant, userId: "u", sessionId: session.sessionId, sibling, result: outcome.value, events: await events(session.sessionId), eventsOf: events, before, after });
      } finally {
        // A failed case leaves no slot half moved for the next one.
        await move?.finish();
        await store.dispose();
      }
    });
  }
});
