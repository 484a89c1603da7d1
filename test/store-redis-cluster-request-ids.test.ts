/**
 * Idempotent create on a real 3-primary Redis Cluster (16 partitions): an
 * unguarded request id is matched tenant-wide, as on one Redis, through its
 * claim in its own partition (src/store/redis/request-claims.ts). Each case
 * that compares with one Redis runs the same calls on a single redis-server.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { Cluster } from "ioredis";
import { isSessionError } from "../src/domain/errors.js";
import { Partitioning, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { CreateSessionInput, CreateSessionResult, SessionStore } from "../src/store/store.js";
import { CONFORMANCE_LIMITS } from "./conformance/store-conformance.js";
import { useRedisCluster } from "./support/redis-cluster.js";
import { useRedisServer } from "./support/redis-server.js";

const cluster = useRedisCluster({ primaries: 3, replicas: 0 });
const single = useRedisServer();

const PREFIX = "sdrq:";
const PARTITIONS = 16;
const TENANT = "acme";
const TIMEOUT_MS = 1500;
const partitions = new Partitioning(PARTITIONS);
const keys = new RedisKeys(PREFIX, TENANT, partitions);

function seeds(): { host: string; port: number }[] {
  return cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
}

/** A plain cluster client, opened by the first test that needs it. */
let rawClient: Cluster | undefined;
function raw(): Cluster {
  if (rawClient === undefined) {
    rawClient = new Cluster(seeds(), { redisOptions: { maxRetriesPerRequest: 1 } });
    rawClient.on("error", () => {});
  }
  return rawClient;
}
after(() => rawClient?.disconnect());

const opened: RedisStore[] = [];
after(async () => {
  for (const store of opened) await store.dispose();
});

async function clusterStore(limits = CONFORMANCE_LIMITS): Promise<RedisStore> {
  await raw().ping();
  await Promise.all(raw().nodes("master").map((node) => node.flushall()));
  return openClusterStore(limits);
}

function openClusterStore(limits = CONFORMANCE_LIMITS): RedisStore {
  const store = new RedisStore({ url: "", cluster: { nodes: seeds() }, keyPrefix: PREFIX, partitions: PARTITIONS, limits, commandTimeoutMs: TIMEOUT_MS });
  opened.push(store);
  return store;
}

async function singleStore(): Promise<RedisStore> {
  await single.raw.flushall();
  const store = new RedisStore({ url: single.url, keyPrefix: PREFIX, limits: CONFORMANCE_LIMITS, commandTimeoutMs: TIMEOUT_MS });
  opened.push(store);
  return store;
}

function input(overrides: Partial<CreateSessionInput> = {}): CreateSessionInput {
  return { tenant: TENANT, userId: "user-1", dataSource: "src", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "", ...overrides };
}

/** Two users whose sessions live in different partitions (and so, with 16 partitions on 3 primaries, often different nodes). */
function usersApart(): [string, string] {
  const first = "user-1";
  for (let i = 2; ; i++) {
    const other = `user-${i}`;
    if (partitions.ofUser(TENANT, other) !== partitions.ofUser(TENANT, first)) return [first, other];
  }
}

/** What a caller sees of a create, comparable across stores (session ids differ). */
function outcome(result: CreateSessionResult, ids: readonly string[]): { created: boolean; session: number; userId: string } {
  return { created: result.created, session: ids.indexOf(result.session.sessionId), userId: result.session.userId };
}

describe("RedisStore on a Redis Cluster: request ids", () => {
  it("one request id under two user ids: the same outcomes as one Redis (the second create answers the first session)", async () => {
    const [alice, bob] = usersApart();
    const steps: Partial<CreateSessionInput>[] = [
      { userId: alice, requestId: "req-x" },
      { userId: bob, requestId: "req-x", dataSource: "other", ttlMs: 5000, metadata: '{"a":1}' },
      { userId: bob, requestId: "req-x" },
    ];
    const run = async (store: SessionStore): Promise<ReturnType<typeof outcome>[]> => {
      const ids: string[] = [];
      const out = [];
      for (const step of steps) {
        const result = await store.create(input(step));
        if (!ids.includes(result.session.sessionId)) ids.push(result.session.sessionId);
        out.push(outcome(result, ids));
      }
      assert.equal((await store.counters(TENANT)).total, 1);
      return out;
    };
    const onOne = await run(await singleStore());
    assert.deepEqual(onOne, [
      { created: true, session: 0, userId: alice },
      { created: false, session: 0, userId: alice },
      { created: false, session: 0, userId: alice },
    ]);
    assert.deepEqual(await run(await clusterStore()), onOne);
  });

  it("keeps the claim and the session in different slots, the claim naming the session", async () => {
    const store = await clusterStore();
    let requestId = "req-0";
    for (let i = 1; partitions.ofRequestId(TENANT, requestId) === partitions.ofUser(TENANT, "user-1"); i++) requestId = `req-${i}`;
    const { session } = await store.create(input({ requestId }));
    const claim = keys.requestClaim(requestId);
    const slotOf = async (key: string): Promise<number> => Number(await raw().call("CLUSTER", "KEYSLOT", key));
    assert.notEqual(await slotOf(claim), await slotOf(keys.record(session.sessionId)));
    assert.match((await raw().get(claim)) ?? "", new RegExp(`^${session.sessionId} \\d+$`));
    const ttl = await raw().pttl(claim);
    assert.ok(ttl > 60_000 && ttl <= 60_000 + 5000 + TIMEOUT_MS, `the claim lasts the session's ttl and the slack: ${ttl}`);
    assert.equal(await raw().exists(keys.requestId(requestId, partitions.ofUser(TENANT, "user-1"))), 0, "no per-partition request id key besides the claim");
  });

  it("many concurrent creates with one request id, from many users and two store instances, make exactly one session", async () => {
    const first = await clusterStore();
    const second = openClusterStore();
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? first : second).create(input({ userId: `user-${i % 7}`, requestId: "storm" }))),
    );
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.equal(new Set(results.map((r) => r.session.sessionId)).size, 1);
    const c = await first.counters(TENANT);
    assert.equal(c.total, 1);
    assert.equal(c.active, 1);
  });

  it("after a close the request id creates a new session, whichever user asks", async () => {
    const [alice, bob] = usersApart();
    const store = await clusterStore();
    const first = await store.create(input({ userId: alice, requestId: "req-c" }));
    await store.close(TENANT, first.session.sessionId);
    assert.equal(await raw().exists(keys.requestClaim("req-c")), 0, "the close deleted the claim");
    const second = await store.create(input({ userId: bob, requestId: "req-c" }));
    assert.equal(second.created, true);
    assert.equal(second.session.userId, bob);
    const third = await store.create(input({ userId: alice, requestId: "req-c" }));
    assert.deepEqual({ created: third.created, id: third.session.sessionId }, { created: false, id: second.session.sessionId });
  });

  it("a claim whose create never ran (the claimer died between the steps): a retry completes, and the dead claimer's id can never be created", async () => {
    const store = await clusterStore();
    const deadId = partitions.newSessionId(TENANT, "user-9");
    const claim = keys.requestClaim("req-dead");
    // What the claim step writes (lua/claim.ts), as a claimer that died just after it left it.
    const now = Number((await raw().time())[0]) * 1000;
    await raw().set(claim, `${deadId} ${now}`, "PX", 600_000);
    const retry = await store.create(input({ userId: "user-1", requestId: "req-dead" }));
    assert.equal(retry.created, true, "the retry waited out the claimer's deadline, then created");
    assert.notEqual(retry.session.sessionId, deadId);
    assert.equal((await raw().get(claim))?.split(" ")[0], retry.session.sessionId);
    assert.equal(await raw().exists(`${keys.record(deadId)}:v`), 1, "the dead claimer's id is void");
    // The dead claimer's create step arriving late (its id, another request id so that it claims anew): refused.
    await assert.rejects(
      store.create(input({ userId: "user-9", sessionId: deadId, requestId: "req-late" })),
      (e: unknown) => isSessionError(e) && e.kind === "unavailable",
    );
    await assert.rejects(store.get(TENANT, deadId, { touch: false, includeEnded: true }), (e: unknown) => isSessionError(e) && e.kind === "not_found");
    assert.equal((await store.counters(TENANT)).total, 1);
  });

  it("a claim left long ago by a claimer that died is taken over at once", async () => {
    const store = await clusterStore();
    const deadId = partitions.newSessionId(TENANT, "user-9");
    const claim = keys.requestClaim("req-old");
    await raw().set(claim, `${deadId} 1000`, "PX", 600_000);
    const retry = await store.create(input({ requestId: "req-old" }));
    assert.equal(retry.created, true);
    assert.equal((await store.create(input({ userId: "user-9", requestId: "req-old" }))).session.sessionId, retry.session.sessionId);
  });

  it("a session whose request id an earlier version kept in the user's partition answers its user's retry, and leaves no claim", async () => {
    const store = await clusterStore();
    const { session } = await store.create(input());
    // The earlier layout: `P T:{n}r:<requestId>` in the user's partition, naming the session.
    await raw().set(keys.requestId("req-old-layout", partitions.ofUser(TENANT, "user-1")), session.sessionId);
    const retry = await store.create(input({ requestId: "req-old-layout" }));
    assert.deepEqual({ created: retry.created, id: retry.session.sessionId }, { created: false, id: session.sessionId });
    assert.equal(await raw().exists(keys.requestClaim("req-old-layout")), 0);
  });

  it("a create refused by a cap releases its claim: the request id is free at once", async () => {
    const store = await clusterStore({ ...CONFORMANCE_LIMITS, maxSessionsPerUser: 1, sessionsPerUserPolicy: "reject" });
    const existing = await store.create(input());
    await assert.rejects(store.create(input({ requestId: "req-cap" })), (e: unknown) => isSessionError(e) && e.kind === "limit_exceeded");
    assert.equal(await raw().exists(keys.requestClaim("req-cap")), 0);
    await store.close(TENANT, existing.session.sessionId);
    assert.equal((await store.create(input({ requestId: "req-cap" }))).created, true);
  });

  it("an extend past the claim's end renews the claim first, so a live session's request id is always matched", async () => {
    const store = await clusterStore();
    const { session } = await store.create(input({ requestId: "req-ext", ttlMs: 2000 }));
    const claim = keys.requestClaim("req-ext");
    assert.ok((await raw().pttl(claim)) < 2000 + 5000 + TIMEOUT_MS + 1);
    await store.extend(TENANT, session.sessionId, 600_000);
    assert.ok((await raw().pttl(claim)) > 600_000, "the claim outlives the extended session");
    const again = await store.create(input({ userId: "user-3", requestId: "req-ext" }));
    assert.deepEqual({ created: again.created, id: again.session.sessionId }, { created: false, id: session.sessionId });
    // Within the renewed claim a further extend needs no renewal, and changes nothing of the claim.
    const before = await raw().pexpiretime(claim);
    await store.extend(TENANT, session.sessionId, 600_000);
    assert.equal(await raw().pexpiretime(claim), before);
  });
});
