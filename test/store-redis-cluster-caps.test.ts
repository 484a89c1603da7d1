/**
 * MAX_SESSIONS_PER_TENANT and MAX_DATA_SOURCES_PER_TENANT across the partitions of a real Redis Cluster
 * (3 primaries, one cluster for the file): a tenant whose users spread over
 * every partition cannot hold more than the cap, whichever service replica
 * creates; creates racing in different partitions overshoot by at most the
 * creates in flight at once (README "Running on Redis Cluster").
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../src/domain/errors.js";
import { Partitioning } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
const PARTITIONS = 16;
const CAP = 20;

function openStore(prefix: string, caps: { maxSessionsPerTenant?: number; maxDataSourcesPerTenant?: number } = { maxSessionsPerTenant: CAP }): RedisStore {
  const nodes = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
  return new RedisStore({
    url: "",
    cluster: { nodes },
    keyPrefix: prefix,
    partitions: PARTITIONS,
    limits: { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000, ...caps },
    commandTimeoutMs: 5000,
  });
}

async function tryCreate(store: RedisStore, tenant: string, userId: string): Promise<"ok" | "capped"> {
  try {
    await store.create({ tenant, userId, dataSource: "ds", accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" });
    return "ok";
  } catch (error) {
    if (error instanceof SessionError && error.kind === "limit_exceeded" && /maximum number of live sessions/.test(error.message)) return "capped";
    throw error;
  }
}

describe("MAX_SESSIONS_PER_TENANT on a Redis Cluster", () => {
  it("holds tenant-wide, not per partition, with creates alternating between two store instances", async () => {
    const [a, b] = [openStore("cap1:"), openStore("cap1:")];
    try {
      const partitioning = new Partitioning(PARTITIONS);
      const users = Array.from({ length: 5 * CAP }, (_, i) => `user-${i}`);
      assert.equal(new Set(users.map((u) => partitioning.ofUser("t", u))).size, PARTITIONS, "the users cover every partition");
      const outcomes: string[] = [];
      for (const [i, user] of users.entries()) outcomes.push(await tryCreate(i % 2 === 0 ? a : b, "t", user));
      assert.equal(outcomes.filter((o) => o === "ok").length, CAP);
      assert.equal((await a.counters("t")).active, CAP);
      // Another tenant is not affected.
      assert.equal(await tryCreate(a, "other", "user-0"), "ok");
      // Closing one makes room for exactly one, in any partition.
      const { sessions } = await a.list("t", {}, 1);
      await b.close("t", (sessions[0] as { sessionId: string }).sessionId);
      const after = [];
      for (const user of users.slice(0, 10)) after.push(await tryCreate(b, "t", `${user}-again`));
      assert.equal(after.filter((o) => o === "ok").length, 1);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });

  it("concurrent creates in many partitions overshoot by less than the creates in flight, and then nothing more fits", async () => {
    const stores = [openStore("cap2:"), openStore("cap2:")];
    try {
      const IN_FLIGHT = 40;
      const outcomes = await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => tryCreate(stores[i % 2] as RedisStore, "t", `user-${i}`)));
      const created = outcomes.filter((o) => o === "ok").length;
      assert.ok(created >= CAP && created <= CAP + IN_FLIGHT - 1, `created ${created}`);
      const active = (await stores[0]?.counters("t"))?.active;
      assert.equal(active, created);
      // Once the racing creates have landed, every partition sees the tenant at or over its cap: a second wave creates nothing.
      const wave = await Promise.all(Array.from({ length: IN_FLIGHT }, (_, i) => tryCreate(stores[i % 2] as RedisStore, "t", `late-${i}`)));
      assert.deepEqual(wave.filter((o) => o === "ok"), []);
    } finally {
      await Promise.all(stores.map((s) => s.dispose()));
    }
  });

  it("MAX_DATA_SOURCES_PER_TENANT counts distinct live data sources tenant-wide, a source shared by many partitions once", async () => {
    const SOURCES = 5;
    const [a, b] = [openStore("cap3:", { maxDataSourcesPerTenant: SOURCES }), openStore("cap3:", { maxDataSourcesPerTenant: SOURCES })];
    const create = async (store: RedisStore, userId: string, dataSource: string): Promise<string> => {
      try {
        return (await store.create({ tenant: "t", userId, dataSource, accessLevel: "read", ttlMs: 600_000, metadata: "{}", requestId: "" })).session.sessionId;
      } catch (error) {
        if (error instanceof SessionError && error.kind === "limit_exceeded" && /data sources/.test(error.message)) return "capped";
        throw error;
      }
    };
    try {
      // 48 users over every partition share the 5 sources: all fit (the sum of per-partition counts is far above 5).
      const bySource = new Map<string, string[]>();
      for (let i = 0; i < 48; i++) {
        const ds = `ds-${i % SOURCES}`;
        const id = await create(i % 2 === 0 ? a : b, `user-${i}`, ds);
        assert.notEqual(id, "capped", `user-${i} on ${ds}`);
        bySource.set(ds, [...(bySource.get(ds) ?? []), id]);
      }
      // A sixth source is refused for every user, in every partition, and by an update too.
      for (let i = 0; i < 32; i++) assert.equal(await create(i % 2 === 0 ? a : b, `user-${i}`, "ds-new"), "capped");
      const someId = (bySource.get("ds-0") as string[])[0] as string;
      await assert.rejects(a.update("t", someId, { dataSource: "ds-new" }), (e: unknown) => e instanceof SessionError && e.kind === "limit_exceeded");
      assert.equal((await a.update("t", someId, { dataSource: "ds-1" })).dataSource, "ds-1", "moving to a live source fits");
      // Once every session of one source has ended, a new source fits, exactly one.
      for (const id of bySource.get("ds-4") as string[]) await b.close("t", id);
      const results = [];
      for (let i = 0; i < 8; i++) results.push(await create(i % 2 === 0 ? a : b, `user-${i}`, `ds-next-${i}`));
      assert.equal(results.filter((r) => r !== "capped").length, 1);
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });
});
