/**
 * RedisStore sends the script calls of one partition made together as one
 * FCALL (fcall-batcher.ts): counted with INFO commandstats on a real Redis and
 * a real Redis Cluster. Each call keeps its own outcome: found, not found,
 * denied by its guard, failing on a damaged key, or a repeated request id,
 * while the calls next to it succeed; identical calls are not merged.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { Cluster, type Redis } from "ioredis";
import { SessionError } from "../src/domain/errors.js";
import type { SessionRecord } from "../src/domain/model.js";
import type { CreateSessionInput } from "../src/store/store.js";
import { Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { DEFAULT_FCALL_BATCH_BOUNDS } from "../src/store/redis/fcall-batcher.js";
import { CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";
import { useRedisServer } from "./support/redis-server.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const TENANT = "tenant-b";
/** The requests one HTTP/2 connection has in flight by default: a burst. */
const CALLS = 64;
/** Most calls in one batch of writes (creates) and of reads (gets). */
const WRITE_BATCH = DEFAULT_FCALL_BATCH_BOUNDS.maxCalls;
const READ_BATCH = DEFAULT_FCALL_BATCH_BOUNDS.maxReadCalls;

/** FCALLs that nodes ran (calls of every function, batch or not). */
async function fcalls(nodes: readonly Redis[]): Promise<number> {
  let total = 0;
  for (const node of nodes) {
    const stats = await node.info("commandstats");
    const line = /^cmdstat_fcall:calls=(\d+)/m.exec(stats);
    total += line === null ? 0 : Number(line[1]);
  }
  return total;
}

/**
 * fcalls(), asked by another process (redis-cli) while this one's event loop
 * is blocked: what Redis has run of what this turn sent so far. Asks again
 * until at least `least` have run or a few seconds have passed.
 */
function fcallsFromOutside(nodes: readonly Redis[], least: number): number {
  const deadline = Date.now() + 5000;
  for (;;) {
    let total = 0;
    for (const node of nodes) {
      const run = spawnSync("redis-cli", ["-p", String(node.options.port), "info", "commandstats"], { encoding: "utf8" });
      total += Number(/^cmdstat_fcall:calls=(\d+)/m.exec(run.stdout)?.[1] ?? 0);
    }
    if (total >= least || Date.now() > deadline) return total;
    spawnSync("sleep", ["0.05"]);
  }
}

async function resetStats(nodes: readonly Redis[]): Promise<void> {
  await Promise.all(nodes.map((node) => node.config("RESETSTAT")));
}

function input(userId: string, requestId = ""): CreateSessionInput {
  return { tenant: TENANT, userId, dataSource: "ds", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId };
}

/** Runs `fn` on a deployment `open` makes, closed after. */
async function using(open: () => Promise<Opened>, fn: (opened: Opened) => Promise<void>): Promise<void> {
  const opened = await open();
  try {
    await fn(opened);
  } finally {
    await opened.close();
  }
}

/** Two sessions of two users, each allowed to write data. */
async function writers(store: RedisStore): Promise<[SessionRecord, SessionRecord]> {
  const first = (await store.create({ ...input("writer"), accessLevel: "write" })).session;
  const second = (await store.create({ ...input("writer-2"), accessLevel: "write" })).session;
  return [first, second];
}

function kindOf(outcome: PromiseSettledResult<unknown>): string {
  if (outcome.status === "fulfilled") return "ok";
  const error: unknown = outcome.reason;
  return error instanceof SessionError ? error.kind : "internal";
}

/**
 * The cases shared by both deployments. `nodes`: a raw connection to every
 * primary; `partitions`: the store's layout, to name keys.
 */
interface Opened {
  readonly store: RedisStore;
  readonly nodes: readonly Redis[];
  readonly partitions: Partitioning;
  /** Writes a string at `key` (routed to its slot's primary). */
  readonly damage: (key: string) => Promise<unknown>;
  /** Sets one field of the hash at `key`. */
  readonly setField: (key: string, field: string, value: string) => Promise<unknown>;
  /** XLEN of the stream at `key`. */
  readonly streamLength: (key: string) => Promise<number>;
  readonly close: () => Promise<void>;
}

function batchingCases(open: () => Promise<Opened>): void {
  it("64 concurrent gets are far fewer FCALLs, and each answers for its own session", async () => {
    const { store, nodes, partitions, close } = await open();
    try {
      const sessions: SessionRecord[] = [];
      for (let i = 0; i < 8; i++) sessions.push((await store.create(input(`user-${i}`))).session);
      const ids = Array.from({ length: CALLS }, (_, i) => (sessions[i % sessions.length] as SessionRecord).sessionId);
      await resetStats(nodes);
      const got = await Promise.all(ids.map((id) => store.get(TENANT, id, { touch: true, includeEnded: false })));
      const sent = await fcalls(nodes);
      // One FCALL per full or last batch of each partition met, not one per call.
      const perPartition = new Map<number, number>();
      for (const id of ids) {
        const partition = partitions.ofSession(id);
        perPartition.set(partition, (perPartition.get(partition) ?? 0) + 1);
      }
      const batches = [...perPartition.values()].reduce((n, calls) => n + Math.ceil(calls / READ_BATCH), 0);
      assert.ok(sent <= batches, `${sent} FCALLs for ${CALLS} gets in ${perPartition.size} partition(s)`);
      got.forEach((session, i) => assert.equal(session.sessionId, ids[i]));
    } finally {
      await close();
    }
  });

  it("the creates of batches keep the event log trimmed to its retention (once per batch, at its end)", async () => {
    const { store, nodes, partitions, streamLength, close } = await open();
    try {
      const rounds = 4;
      const userId = "trimmed-user";
      const partition = partitions.ofUser(TENANT, userId);
      await resetStats(nodes);
      for (let round = 0; round < rounds; round++) {
        await Promise.all(Array.from({ length: CALLS }, () => store.create(input(userId))));
      }
      // Sent together: the trim under test is the batch's, not a lone call's.
      assert.ok((await fcalls(nodes)) <= rounds * Math.ceil(CALLS / WRITE_BATCH), "the creates were not sent in batches");
      // CONFORMANCE_LIMITS keeps 50 events; '~' trims whole stream nodes of 100 entries.
      const length = await streamLength(new RedisKeys("sdb:", TENANT, partitions).events(partition));
      assert.ok(length >= 50 && length <= 150, `${length} events after ${rounds * CALLS} creates`);
    } finally {
      await close();
    }
  });

  it("a full batch of writes goes to Redis at once, mid-turn; the calls after it wait for the turn's end", async () => {
    const { store, nodes, close } = await open();
    try {
      // One user: every create goes to the same partition.
      await store.create(input("writer"));
      await resetStats(nodes);
      // One turn: a full batch of creates and three more, then, before the turn ends, Redis is asked what it ran.
      const pending = Array.from({ length: WRITE_BATCH + 3 }, () => store.create(input("writer")));
      const midTurn = fcallsFromOutside(nodes, 1);
      const created = await Promise.all(pending);
      assert.equal(midTurn, 1, "the full batch had not reached Redis before the turn ended");
      assert.equal(await fcalls(nodes), 2);
      assert.equal(new Set(created.map((c) => c.session.sessionId)).size, WRITE_BATCH + 3);
    } finally {
      await close();
    }
  });

  it("reads split a burst of one connection (64 calls) into batches of their bound, so Redis runs one while the service prepares the next", async () => {
    const { store, nodes, close } = await open();
    try {
      const live = (await store.create(input("owner"))).session;
      await resetStats(nodes);
      const got = await Promise.all(Array.from({ length: CALLS }, () => store.get(TENANT, live.sessionId, { touch: true, includeEnded: false })));
      assert.equal(await fcalls(nodes), Math.ceil(CALLS / READ_BATCH), "a connection's burst of reads in full batches");
      assert.ok(got.every((session) => session.sessionId === live.sessionId));
    } finally {
      await close();
    }
  });

  it("a batch holds at most its bound of calls, and one that meets a Redis without the library loads it and runs", async () => {
    const { store, nodes, close } = await open();
    try {
      const live = (await store.create(input("owner"))).session;
      await Promise.all(nodes.map((node) => node.call("FUNCTION", "FLUSH")));
      await resetStats(nodes);
      const calls = 200;
      const got = await Promise.all(Array.from({ length: calls }, () => store.get(TENANT, live.sessionId, { touch: false, includeEnded: false })));
      assert.ok(got.every((session) => session.sessionId === live.sessionId));
      const sent = await fcalls(nodes);
      // Each batch is sent twice (refused: "Function not found", then after the load).
      assert.ok(sent >= Math.ceil(calls / READ_BATCH) && sent <= 2 * Math.ceil(calls / READ_BATCH), `${sent} FCALLs for ${calls} gets`);
    } finally {
      await close();
    }
  });

  it("a call that is not found, denied by its guard or fails on a damaged key fails alone", async () => {
    const { store, nodes, partitions, damage, close } = await open();
    try {
      const live = (await store.create(input("owner"))).session;
      const missing = randomUUID();
      const damaged = randomUUID();
      // A record key holding a string: the get's HMGET raises WRONGTYPE inside its script.
      const damagedKey = new RedisKeys("sdb:", TENANT, partitions).record(damaged);
      await damage(damagedKey);
      const calls: (() => Promise<unknown>)[] = [];
      // One batch's worth: four kinds of call, side by side.
      for (let i = 0; i < READ_BATCH / 4; i++) {
        calls.push(() => store.get(TENANT, live.sessionId, { touch: false, includeEnded: false }));
        calls.push(() => store.get(TENANT, missing, { touch: false, includeEnded: false }));
        calls.push(() => store.get(TENANT, live.sessionId, { touch: false, includeEnded: false, guard: { userId: "owner", level: "write" } }));
        calls.push(() => store.get(TENANT, damaged, { touch: false, includeEnded: false }));
      }
      await resetStats(nodes);
      const outcomes = await Promise.allSettled(calls.map((call) => call()));
      // The failing calls ran in the same FCALLs as the succeeding ones.
      const met = new Set([live.sessionId, missing, damaged].map((id) => partitions.ofSession(id))).size;
      assert.ok((await fcalls(nodes)) <= met, "the calls were not sent together");
      const kinds = outcomes.map(kindOf);
      for (let i = 0; i < kinds.length; i += 4) {
        assert.deepEqual(kinds.slice(i, i + 4), ["ok", "not_found", "permission_denied", "internal"]);
      }
      const failed = outcomes[3];
      assert.ok(failed?.status === "rejected");
      assert.match(String(failed.reason), /WRONGTYPE/);
      const first = outcomes[0];
      assert.ok(first?.status === "fulfilled");
      assert.equal((first.value as SessionRecord).sessionId, live.sessionId);
    } finally {
      await close();
    }
  });

  it("a call with more than 64 arguments runs in a batch next to short ones, with every argument", async () => {
    const { store, close } = await open();
    try {
      const [session, other] = await writers(store);
      // Stored forms of one key under earlier keys: a set removes every one it is told of, the last included.
      const aliases = Array.from({ length: 100 }, (_, i) => `alias-${i}`);
      await store.setData(TENANT, session.sessionId, "alias-99", '"old"');
      const results = await Promise.all([
        store.setData(TENANT, other.sessionId, "k", '"a"'),
        store.setData(TENANT, session.sessionId, "key", '"new"', undefined, { aliases }),
        store.setData(TENANT, other.sessionId, "k2", '"b"'),
      ]);
      assert.equal(results.length, 3);
      assert.deepEqual([...(await store.listData(TENANT, session.sessionId, true)).entries()], [["key", '"new"']]);
      assert.deepEqual([...(await store.listData(TENANT, other.sessionId, true)).entries()], [["k", '"a"'], ["k2", '"b"']]);
    } finally {
      await close();
    }
  });

  it("gets of live sessions next to one that expires on read: each answers, and the expiry is reported", () =>
    using(open, async ({ store, partitions, setField }) => {
      const live = (await store.create({ ...input("owner"), metadata: '{"a":1}' })).session;
      const due = (await store.create(input("owner-2"))).session;
      // Due since a second ago: the get archives it on the way (lazily) and reports it to the expiry listeners.
      const expireTime = Date.now() - 1000;
      await setField(new RedisKeys("sdb:", TENANT, partitions).record(due.sessionId), "e", String(expireTime));
      const reported: SessionRecord[] = [];
      const stop = store.onExpired((expirations) => reported.push(...expirations.map((e) => e.record)));
      const got = await Promise.all([
        store.get(TENANT, live.sessionId, { touch: false, includeEnded: false }),
        store.get(TENANT, due.sessionId, { touch: false, includeEnded: true }),
        store.get(TENANT, live.sessionId, { touch: true, includeEnded: false }),
      ]);
      stop();
      for (const session of [got[0], got[2]]) {
        assert.deepEqual(
          [session?.sessionId, session?.status, session?.userId, session?.metadata, session?.createTime, session?.expireTime],
          [live.sessionId, "active", "owner", '{"a":1}', live.createTime, live.expireTime],
        );
      }
      assert.deepEqual([got[1]?.sessionId, got[1]?.status, got[1]?.endTime], [due.sessionId, "expired", expireTime]);
      assert.deepEqual(reported.map((r) => [r.sessionId, r.status]), [[due.sessionId, "expired"]]);
    }));

  it("a shorter call after a longer one in a batch sees only its own arguments", () =>
    using(open, async ({ store }) => {
      const [long, short] = await writers(store);
      await store.setData(TENANT, short.sessionId, "k", '"a"');
      await store.setData(TENANT, short.sessionId, "alias-5", '"kept"');
      // A delete removes every stored form it is told of: one told of the first call's aliases would remove alias-5.
      // Two aliases: both calls short enough to share one argument table in the batch (run_batch).
      const aliases = ["alias-0", "alias-5"];
      await Promise.all([store.deleteData(TENANT, long.sessionId, "x", undefined, { aliases }), store.deleteData(TENANT, short.sessionId, "k")]);
      assert.deepEqual([...(await store.listData(TENANT, short.sessionId, true)).entries()], [["alias-5", '"kept"']]);
    }));

  it("concurrent creates each run: a repeated request id answers with the first one's session, the rest create", async () => {
    const { store, nodes, close } = await open();
    try {
      await store.create(input("warm"));
      await resetStats(nodes);
      const requestId = `req-${randomUUID()}`;
      const results = await Promise.all(
        Array.from({ length: CALLS }, (_, i) => store.create(i % 2 === 0 ? input(`same-user`, requestId) : input(`user-${i}`))),
      );
      const repeated = results.filter((_, i) => i % 2 === 0);
      const firstId = repeated.find((r) => r.created)?.session.sessionId;
      assert.equal(repeated.filter((r) => r.created).length, 1);
      for (const r of repeated) assert.equal(r.session.sessionId, firstId);
      const others = results.filter((_, i) => i % 2 === 1);
      assert.ok(others.every((r) => r.created));
      assert.equal(new Set(others.map((r) => r.session.sessionId)).size, others.length);
      const counted = await store.counters(TENANT);
      assert.equal(counted.active, 1 + 1 + others.length);
      assert.ok((await fcalls(nodes)) < CALLS, "creates were not sent together");
    } finally {
      await close();
    }
  });
}

describe("RedisStore batches script calls: one Redis", () => {
  const server = useRedisServer();
  batchingCases(async () => {
    await server.raw.flushall();
    const store = new RedisStore({ url: server.url, keyPrefix: "sdb:", limits: CONFORMANCE_LIMITS, commandTimeoutMs: 3000 });
    // Loads the library before counting ("Function not found" on a new Redis).
    await store.get(TENANT, randomUUID(), { touch: false, includeEnded: false }).catch(() => undefined);
    return { store, nodes: [server.raw], partitions: new Partitioning(1), damage: (key) => server.raw.set(key, "not a hash"), setField: (key, field, value) => server.raw.hset(key, field, value), streamLength: (key) => server.raw.xlen(key), close: () => store.dispose() };
  });
});

describe("RedisStore batches script calls: Redis Cluster", () => {
  const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
  const PARTITIONS = 4;
  batchingCases(async () => {
    const seeds = cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
    const raw = new Cluster(seeds, { redisOptions: { maxRetriesPerRequest: 1 } });
    raw.on("error", () => {});
    await raw.ping();
    const nodes = raw.nodes("master");
    await Promise.all(nodes.map((node) => node.flushall()));
    const store = new RedisStore({ url: "", cluster: { nodes: seeds }, keyPrefix: "sdb:", partitions: PARTITIONS, limits: CONFORMANCE_LIMITS, commandTimeoutMs: 3000 });
    await store.get(TENANT, randomUUID(), { touch: false, includeEnded: false }).catch(() => undefined);
    return {
      store,
      nodes,
      partitions: new Partitioning(PARTITIONS),
      damage: (key) => raw.set(key, "not a hash"),
      setField: (key, field, value) => raw.hset(key, field, value),
      streamLength: (key) => raw.xlen(key),
      close: async () => {
        await store.dispose();
        raw.disconnect();
      },
    };
  });
});
