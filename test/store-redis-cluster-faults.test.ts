/**
 * RedisStore on a real Redis Cluster under faults (3 primaries with a replica
 * each, one cluster for the file): expiry and the watch stay exactly-once
 * across two store instances (service replicas); slots resharded under load
 * while a watch runs; a primary killed with kill -9 under load, its replica
 * promoted: calls fail with retryable kinds for a bounded time, then succeed
 * by themselves.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { SessionError } from "../src/domain/errors.js";
import { keySlot, Partitioning } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { StoredEvent } from "../src/store/store.js";
import { useRedisCluster } from "./support/redis-cluster.js";
import { PartitionedEventGroup } from "../src/archive/partitioned-event-group.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 1, nodeTimeoutMs: 1000 });
const PARTITIONS = 16;
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000, eventRetentionCount: 100_000 };

function openStore(prefix: string): RedisStore {
  const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  return new RedisStore({ url: "", cluster: { nodes }, keyPrefix: prefix, partitions: PARTITIONS, limits: LIMITS, commandTimeoutMs: 3000 });
}

/** Reads the merged log from the start through a tail, until `until` holds or the bound passes. */
async function follow(store: RedisStore, from: string, until: (events: StoredEvent[]) => boolean, boundMs: number): Promise<StoredEvent[]> {
  const tail = store.openEventTail();
  const seen: StoredEvent[] = [];
  let cursor = from;
  const deadline = Date.now() + boundMs;
  try {
    while (!until(seen) && Date.now() < deadline) {
      try {
        const batch = await tail.read(cursor, 200, 200);
        seen.push(...batch);
        cursor = batch.at(-1)?.id ?? cursor;
      } catch (error) {
        // A call during a fault: retried, as the event hub does.
        if (!(error instanceof SessionError) || error.kind === "out_of_range") throw error;
        await sleep(50);
      }
    }
  } finally {
    tail.close();
  }
  return seen;
}

function assertExactlyOnceInOrder(events: readonly StoredEvent[], why: string): void {
  const ids = events.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `${why}: no event twice`);
  for (let i = 1; i < events.length; i++) {
    const [a, b] = [events[i - 1]?.id ?? "", events[i]?.id ?? ""];
    const [am, as] = a.split("-").map(Number) as [number, number];
    const [bm, bs] = b.split("-").map(Number) as [number, number];
    assert.ok(am < bm || (am === bm && as < bs), `${why}: ids increase (${a} then ${b})`);
  }
}

/** Creates and updates sessions of many users (every partition) until stopped; counts outcomes. */
function runLoad(stores: readonly RedisStore[], tenant: string): { stop: () => Promise<void>; ok: () => number; errors: { kind: string; at: number }[]; created: string[] } {
  let running = true;
  let ok = 0;
  const errors: { kind: string; at: number }[] = [];
  const created: string[] = [];
  const worker = async (w: number): Promise<void> => {
    for (let i = 0; running; i++) {
      const store = stores[(w + i) % stores.length] as RedisStore;
      try {
        const { session } = await store.create({ tenant, userId: `u-${w}-${i % 37}`, dataSource: `ds-${i % 5}`, accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "" });
        created.push(session.sessionId);
        await store.update(tenant, session.sessionId, { metadata: `{"i":${i}}` });
        ok += 2;
      } catch (error) {
        errors.push({ kind: error instanceof SessionError ? error.kind : `not a SessionError: ${String(error)}`, at: Date.now() });
        await sleep(20);
      }
    }
  };
  const workers = Array.from({ length: 4 }, (_, w) => worker(w));
  return {
    stop: async () => {
      running = false;
      await Promise.all(workers);
    },
    ok: () => ok,
    errors,
    created,
  };
}

describe("RedisStore on a Redis Cluster under faults", () => {
  it("expiry from two store instances archives each session once; a watch sees every event once, in order", async () => {
    const [a, b] = [openStore("ex:"), openStore("ex:")] as [RedisStore, RedisStore];
    try {
      const start = await a.lastEventId();
      const ids = new Set<string>();
      for (let i = 0; i < 48; i++) ids.add((await (i % 2 === 0 ? a : b).create({ tenant: "t", userId: `user-${i % 12}`, dataSource: `s-${i % 4}`, accessLevel: "read", ttlMs: 300, metadata: "{}", requestId: "" })).session.sessionId);
      await sleep(400);
      const batches = await Promise.all([a.expireDue(7), b.expireDue(7), a.expireDue(100), b.expireDue(100), a.expireDue(100)]);
      const expired = batches.flat().map((r) => r.sessionId);
      assert.equal(new Set(expired).size, expired.length, "no session expired twice");
      assert.deepEqual(new Set(expired), ids, "every session expired");
      const seen = await follow(b, start, (events) => events.filter((e) => e.type === "expired").length >= 48, 20_000);
      assertExactlyOnceInOrder(seen, "watch");
      assert.equal(seen.filter((e) => e.type === "created").length, 48);
      assert.deepEqual(new Set(seen.filter((e) => e.type === "expired").map((e) => e.session.sessionId)), ids);
      assert.deepEqual((await a.readEvents(start, 1000)).map((e) => e.id), seen.map((e) => e.id), "readEvents and the tail agree");
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });

  it("the archive's consumer groups (one per partition) hand every event to exactly one of two replicas, a dead one's taken over", async () => {
    const store = openStore("ag:");
    const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
    const group = (consumer: string): PartitionedEventGroup =>
      new PartitionedEventGroup({ cluster: { nodes }, partitions: PARTITIONS, keyPrefix: "ag:", group: "archive", consumer, commandTimeoutMs: 3000 });
    const [dead, a, b] = [group("dead"), group("a"), group("b")];
    try {
      await store.lastEventId();
      await dead.ensureGroup();
      await Promise.all([a.ensureGroup(), b.ensureGroup()]);
      for (let i = 0; i < 120; i++) await store.create({ tenant: "t", userId: `u-${i % 30}`, dataSource: "d", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" });
      const all = new Set((await store.readEvents("0-0", 1000)).map((e) => e.id));
      assert.equal(all.size, 120);
      // "dead" takes some entries and never acknowledges them.
      const orphaned = await dead.readNew(20, 10);
      assert.ok(orphaned.length > 0);
      // Idle long enough to be taken over; a live replica acknowledges far sooner than CLAIM_IDLE_MS.
      const CLAIM_IDLE_MS = 2000;
      await sleep(CLAIM_IDLE_MS + 100);
      const acked: string[] = [];
      const drain = async (g: PartitionedEventGroup): Promise<void> => {
        for (let round = 0; round < 200 && acked.length < all.size; round++) {
          const entries = [...(await g.readNew(25, 20)), ...(await g.claimIdle(CLAIM_IDLE_MS, 25, "0-0")).entries];
          await g.ack(entries.map((e) => e.id));
          acked.push(...entries.map((e) => e.id));
          if (entries.length === 0) await sleep(50);
        }
      };
      await Promise.all([drain(a), drain(b)]);
      assert.equal(new Set(acked).size, acked.length, "no entry acknowledged twice");
      assert.deepEqual(new Set(acked), all, "every event reached one replica, the dead one's included");
      const stats = await a.stats();
      assert.equal(stats?.pending, 0);
      assert.equal(stats?.undelivered, 0);
    } finally {
      for (const g of [dead, a, b]) g.close();
      await store.dispose();
    }
  });

  it("slots resharded under load while a watch runs: no call fails, no event is lost or repeated", async (t) => {
    const c = cluster();
    const stores = [openStore("rs:"), openStore("rs:")];
    const reader = openStore("rs:");
    try {
      const start = await reader.lastEventId();
      const load = runLoad(stores, "t");
      await sleep(500);
      // Move the slots of two partitions (and everything else in between) from one primary to another.
      const partitions = new Partitioning(PARTITIONS);
      const slot = keySlot((partitions.tags[0] as string).slice(1, -1));
      const from = await c.primaryOf(slot);
      const to = (await c.primaries()).find((n) => n.port !== from.port);
      assert.ok(to !== undefined);
      const moving = Date.now();
      await c.reshard(from, to, 1500);
      t.diagnostic(`resharded 1500 slots in ${Date.now() - moving} ms under load`);
      await sleep(500);
      await load.stop();
      assert.deepEqual(load.errors, [], "no error reached a caller");
      assert.ok(load.ok() > 0);
      const total = load.ok();
      const seen = await follow(reader, start, (events) => events.length >= total, 30_000);
      assertExactlyOnceInOrder(seen, "watch across the reshard");
      assert.equal(seen.length, total, "every acknowledged write has its event");
      assert.deepEqual(new Set(seen.filter((e) => e.type === "created").map((e) => e.session.sessionId)), new Set(load.created));
    } finally {
      await Promise.all([...stores, reader].map((s) => s.dispose()));
    }
  });

  it("a primary killed (kill -9) under load: calls fail with retryable kinds for a bounded time, then succeed by themselves", async (t) => {
    const c = cluster();
    const stores = [openStore("kp:"), openStore("kp:")];
    try {
      const load = runLoad(stores, "t");
      await sleep(500);
      const victim = (await c.primaries())[0];
      assert.ok(victim !== undefined);
      const killedAt = Date.now();
      await victim.kill();
      await c.waitHealthy(30_000);
      // Calls succeed again by themselves: wait for a run of successes after the promotion.
      const okAtPromotion = load.ok();
      const recovered = Date.now() + 30_000;
      while (load.ok() < okAtPromotion + 40 && Date.now() < recovered) await sleep(100);
      await load.stop();
      assert.ok(load.ok() >= okAtPromotion + 40, "calls succeed again after the promotion");
      const kinds = new Set(load.errors.map((e) => e.kind));
      for (const kind of kinds) assert.ok(["unavailable", "outcome_unknown", "deadline_exceeded"].includes(kind), `only retryable failures, got ${kind}`);
      const outage = load.errors.length === 0 ? 0 : Math.max(...load.errors.map((e) => e.at)) - killedAt;
      assert.ok(outage < 30_000, `failures stop within a bounded time (${outage} ms)`);
      t.diagnostic(`failures for ${outage} ms after kill -9: ${JSON.stringify([...kinds])}, ${load.errors.length} failed iterations`);
      // A fresh call on every partition succeeds.
      const store = stores[0] as RedisStore;
      for (let i = 0; i < 40; i++) await store.create({ tenant: "t", userId: `after-${i}`, dataSource: "d", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" });
      assert.ok((await store.list("t", {}, 10)).sessions.length > 0);
    } finally {
      await Promise.all(stores.map((s) => s.dispose()));
    }
  });
});
