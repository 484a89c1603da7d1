/**
 * A Sentinel failover under a steady load of creates (issue 14), on a primary,
 * one replica and three sentinels started from the redis-server binary
 * (test/support/redis-sentinel.ts), the store connected through the sentinels:
 *
 * - The primary is killed with SIGKILL: calls fail (UNAVAILABLE while no
 *   primary is known; UNKNOWN for the few in flight at the kill) for a bounded
 *   time, then succeed by themselves on the promoted replica, whose server
 *   settings (hash-max-listpack-value) the store sets and whose due queue
 *   expires sessions.
 * - Acknowledged writes lost, counted deterministically: every acknowledged
 *   create is read back after the failover. Before the kill the replica is
 *   made to lag (CLIENT PAUSE WRITE on it holds the replication stream it
 *   receives; the stream it buffered is dropped when its link to the killed
 *   primary goes down). Without REDIS_WAIT_REPLICAS the creates acknowledged
 *   in that window are lost, and only those; with REDIS_WAIT_REPLICAS=1 they
 *   fail with UNAVAILABLE instead, and no acknowledged create is lost.
 * - A watch cursor of the lost tail of the event log is OUT_OF_RANGE on the
 *   promoted replica, even once newer events pass it (the generation is the
 *   same there); a cursor it still holds resumes. A live watcher whose event
 *   reader had read into the lost tail is ended with OUT_OF_RANGE.
 * - The archive sink (its own connection, through the sentinels) follows a
 *   failover Sentinel is told to make: sessions ended before and after it are
 *   each in the archive (the machine's PostgreSQL) exactly once, and the sink
 *   reads the new primary's consumer group.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import { isSessionError } from "../src/domain/errors.js";
import type { SessionStore } from "../src/store/store.js";
import { EVENT_LOG_RESET_MESSAGE } from "../src/store/store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { NOT_REPLICATED_MESSAGE } from "../src/store/redis/replica-wait.js";
import { HASH_VALUE_BYTES } from "../src/store/redis/compact-hashes.js";
import { compareEventIds } from "../src/store/event-id.js";
import { EventHub } from "../src/streaming/event-hub.js";
import { useRedisSentinel } from "./support/redis-sentinel.js";
import { ArchiveSink } from "../src/archive/archive-sink.js";
import { PgArchive } from "../src/archive/pg-archive.js";
import { RedisEventGroup } from "../src/archive/redis-event-group.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { usePostgresDatabase } from "./support/postgres.js";

const TENANT = "failover";
const CONCURRENCY = 4;
/** Generous bounds for a loaded machine: a failover takes seconds (down-after 2 s, election, promotion). */
const RECOVERY_LIMIT_MS = 60_000;

interface Ack {
  readonly id: string;
  readonly phase: string;
}

/** Creates in a loop on CONCURRENCY workers; every outcome is recorded with the phase it ended in. */
class CreateLoad {
  phase = "before";
  readonly acked: Ack[] = [];
  readonly failures: { readonly kind: string; readonly message: string; readonly phase: string }[] = [];
  private running = true;
  private readonly workers: Promise<void>[] = [];

  constructor(private readonly store: SessionStore) {
    for (let i = 0; i < CONCURRENCY; i++) this.workers.push(this.work());
  }

  private async work(): Promise<void> {
    while (this.running) {
      try {
        const { session } = await this.store.create({ tenant: TENANT, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "" });
        this.acked.push({ id: session.sessionId, phase: this.phase });
      } catch (error) {
        this.failures.push({ kind: isSessionError(error) ? error.kind : "other", message: error instanceof Error ? error.message : String(error), phase: this.phase });
        await sleep(10);
      }
    }
  }

  count(phase: string): number {
    return this.acked.filter((a) => a.phase === phase).length;
  }

  async until(what: string, done: () => boolean, timeoutMs = RECOVERY_LIMIT_MS): Promise<number> {
    const start = Date.now();
    while (!done()) {
      if (Date.now() - start > timeoutMs) throw new Error(`${what} did not happen within ${timeoutMs} ms (failures: ${JSON.stringify(this.failures.slice(-3))})`);
      await sleep(20);
    }
    return Date.now() - start;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }
}

/** SENTINEL FAILOVER, asked of one sentinel (`control`); resolves once `listener` (on a sentinel) hears the switch to `toPort`. */
async function requestFailover(setup: { readonly target: { readonly masterName: string } }, control: Redis, listener: Redis, toPort: number): Promise<void> {
  const announced = new Promise<string>((resolve) => {
    listener.on("message", (_channel: string, message: string) => resolve(message));
  });
  await listener.subscribe("+switch-master");
  await control.call("SENTINEL", "FAILOVER", setup.target.masterName);
  assert.match(await announced, new RegExp(` ${toPort}$`));
}

/** The acknowledged creates the store cannot find any more. */
async function lost(store: SessionStore, acked: readonly Ack[]): Promise<Ack[]> {
  const missing: Ack[] = [];
  for (const ack of acked) {
    try {
      await store.get(TENANT, ack.id, { touch: false, includeEnded: true });
    } catch (error) {
      if (!(isSessionError(error) && error.kind === "not_found")) throw error;
      missing.push(ack);
    }
  }
  return missing;
}

function failoverScenario(waitReplicas: 0 | 1): void {
  const title = waitReplicas === 0 ? "without REDIS_WAIT_REPLICAS" : "with REDIS_WAIT_REPLICAS=1";
  describe(`Sentinel failover under load, ${title}`, () => {
    const fixture = useRedisSentinel({ replicas: 1 });

    it("follows the failover by itself and loses exactly the acknowledged writes WAIT would have refused", { timeout: 240_000 }, async () => {
      const sentinel = fixture.setup;
      const [primary, replica] = sentinel.nodes;
      assert.ok(primary !== undefined && replica !== undefined);
      const store = new RedisStore({
        sentinel: sentinel.target,
        keyPrefix: "sdfail:",
        limits: { maxDataKeys: 10, archiveRetentionMs: 600_000, expiryGraceMs: 600_000 },
        commandTimeoutMs: 2000,
        ...(waitReplicas === 0 ? {} : { replicaWait: { replicas: waitReplicas, timeoutMs: 300 } }),
      });
      const settings = await store.keepServerSettings();
      const replicaClient = replica.client();
      const hub = new EventHub({ store, blockMs: 200 });
      await hub.start();
      const watcher = hub.subscribe(TENANT, () => true, 1_000_000);
      let load: CreateLoad | undefined;
      try {
        load = new CreateLoad(store);
        await load.until("20 creates", () => (load as CreateLoad).count("before") >= 20);
        // Everything acknowledged so far is on the replica once it reached the primary's offset.
        const safe = load.acked.slice();
        await sentinel.waitReplicated();
        const heldCursor = await store.lastEventId();

        // The replica stops applying what it receives: a replication lag window.
        await replicaClient.call("CLIENT", "PAUSE", "60000", "WRITE");
        load.phase = "lagging";
        if (waitReplicas === 0) {
          await load.until("creates acknowledged while the replica lags", () => (load as CreateLoad).count("lagging") >= 5);
        } else {
          await load.until("creates refused as not replicated", () => (load as CreateLoad).failures.filter((f) => f.message === NOT_REPLICATED_MESSAGE).length >= 3);
        }
        const lostCursor = await store.lastEventId();
        // The live watcher has read into the tail the replica lacks.
        await load.until("the event reader at the lost tail", () => compareEventIds(hub.tenantPosition(TENANT) ?? "0-0", lostCursor) >= 0, 30_000);

        await sentinel.kill(primary);
        load.phase = "failover";
        const killedAt = Date.now();
        // Once its link is down the replica has dropped what it buffered; then it may apply again.
        await sentinel.waitLinkDown(replica);
        await replicaClient.call("CLIENT", "UNPAUSE");
        const newPort = await sentinel.waitForFailover(primary.port);
        assert.equal(newPort, replica.port);
        // With WAIT 1 the new primary needs a replica: the killed node comes back empty, as Sentinel would make it.
        if (waitReplicas > 0) await sentinel.restart(primary, newPort);

        await load.until("creates succeeding again after the failover", () => (load as CreateLoad).count("failover") >= 10);
        const recoveredMs = Date.now() - killedAt;
        load.phase = "after";
        await load.stop();

        // Calls failed for a bounded time, and only as "not applied" or "outcome unknown".
        assert.ok(recoveredMs < RECOVERY_LIMIT_MS, `recovered after ${recoveredMs} ms`);
        const kinds = new Set(load.failures.map((f) => f.kind));
        for (const kind of kinds) assert.ok(["unavailable", "outcome_unknown", "deadline_exceeded"].includes(kind), `failure kind ${kind}`);
        assert.ok(load.failures.some((f) => f.phase === "failover" && f.kind === "unavailable"), "UNAVAILABLE while no primary answered");

        // Acknowledged writes lost: never one the replica had (only those after `safe`, the lag window); with WAIT none at all.
        const missing = await lost(store, load.acked);
        const safeIds = new Set(safe.map((a) => a.id));
        assert.deepEqual(missing.filter((a) => safeIds.has(a.id)), [], "a replicated acknowledged create was lost");
        if (waitReplicas === 0) {
          assert.ok(missing.length >= 1, "creates acknowledged while the replica lagged are lost without WAIT");
        } else {
          assert.equal(missing.length, 0, "with WAIT 1 no acknowledged create is lost");
        }

        // The server settings on the new primary: set by the store once its connection moved there.
        const promoted = replica.client();
        try {
          const deadline = Date.now() + 30_000;
          let value = "";
          while (Date.now() < deadline) {
            value = ((await promoted.config("GET", "hash-max-listpack-value")) as string[])[1] ?? "";
            if (value === String(HASH_VALUE_BYTES)) break;
            await sleep(100);
          }
          assert.equal(value, String(HASH_VALUE_BYTES), "hash-max-listpack-value on the promoted replica");
        } finally {
          promoted.disconnect();
        }
        const { session: short } = await store.create({ tenant: TENANT, userId: "u", dataSource: "short", accessLevel: "write", ttlMs: 500, metadata: "{}", requestId: "" });
        await expiresFromDueQueue(store, short.sessionId);

        // A cursor the promoted replica holds resumes; one of the lost tail is OUT_OF_RANGE, not a silent gap.
        assert.ok((await store.readEvents(heldCursor, 5)).length > 0);
        // (With WAIT the lost tail holds the events of the creates that failed as not replicated.)
        await assert.rejects(store.readEvents(lostCursor, 5), (error: unknown) => {
          assert.ok(isSessionError(error) && error.kind === "out_of_range", String(error));
          assert.equal(error.message, EVENT_LOG_RESET_MESSAGE);
          return true;
        });
        const watchEndedBy = Date.now() + 30_000;
        while (watcher.queue.ended === undefined && Date.now() < watchEndedBy) await sleep(50);
        const ended = watcher.queue.ended;
        assert.ok(isSessionError(ended) && ended.kind === "out_of_range", `the live watcher ended with ${String(ended)}`);

        const counts = { acknowledged: load.acked.length, lost: missing.length, failures: load.failures.length, recoveredMs };
        process.stderr.write(`# sentinel failover ${title}: ${JSON.stringify(counts)}\n`);
      } finally {
        await load?.stop();
        watcher.close();
        await hub.stop();
        await settings.stop();
        replicaClient.disconnect();
        await store.dispose();
      }
    });
  });
}

failoverScenario(0);
failoverScenario(1);

describe("a failover Sentinel is told to make (SENTINEL FAILOVER), the old primary demoted, not dead", () => {
  const fixture = useRedisSentinel({ replicas: 1 });

  it("moves every connection to the new primary once the switch is announced, before the old one is demoted", { timeout: 180_000 }, async () => {
    const sentinel = fixture.setup;
    const [primary, replica] = sentinel.nodes;
    const [asked] = sentinel.sentinels;
    assert.ok(primary !== undefined && replica !== undefined && asked !== undefined);
    const store = new RedisStore({ sentinel: sentinel.target, keyPrefix: "sdmanual:", limits: { maxDataKeys: 10, archiveRetentionMs: 600_000, expiryGraceMs: 600_000 }, commandTimeoutMs: 2000 });
    const settings = await store.keepServerSettings();
    const hub = new EventHub({ store, blockMs: 200 });
    await hub.start();
    const watcher = hub.subscribe(TENANT, () => true, 100_000);
    const control = asked.client();
    const listener = asked.client();
    try {
      const { session: before } = await store.create({ tenant: TENANT, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "" });
      await sentinel.waitReplicated();
      await requestFailover(sentinel, control, listener, replica.port);
      // Sentinel demotes the old primary seconds later; until then it takes writes that the demotion discards.
      // The store has left it once the switch was announced.
      await sleep(500);

      // Calls go to the new primary.
      let created: string | undefined;
      const deadline = Date.now() + RECOVERY_LIMIT_MS;
      while (created === undefined) {
        try {
          created = (await store.create({ tenant: TENANT, userId: "u", dataSource: "short", accessLevel: "write", ttlMs: 500, metadata: "{}", requestId: "" })).session.sessionId;
        } catch (error) {
          if (!isSessionError(error) || Date.now() > deadline) throw error;
          await sleep(50);
        }
      }
      const promoted = replica.client();
      try {
        assert.equal(await promoted.exists(`sdmanual:${TENANT}:{${created}}`), 1, "written to the new primary");
      } finally {
        promoted.disconnect();
      }
      assert.equal((await store.get(TENANT, before.sessionId, { touch: false, includeEnded: false })).sessionId, before.sessionId);
      // The new primary's due queue has the short session.
      await expiresFromDueQueue(store, created);
      // The event reader followed, and nothing was lost: the watcher gets the new create's event, not an end.
      const eventBy = Date.now() + 30_000;
      const seen = (): boolean => {
        for (let event = watcher.queue.shift(); event !== undefined; event = watcher.queue.shift()) {
          if (event.session.sessionId === created) return true;
        }
        return false;
      };
      let delivered = false;
      while (!(delivered ||= seen()) && watcher.queue.ended === undefined && Date.now() < eventBy) await sleep(50);
      assert.equal(watcher.queue.ended, undefined, `the watcher was ended: ${String(watcher.queue.ended)}`);
      assert.ok(delivered, "the create on the new primary reached the watcher");
    } finally {
      control.disconnect();
      listener.disconnect();
      watcher.close();
      await hub.stop();
      await settings.stop();
      await store.dispose();
    }
  });
});

describe("the archive sink through Sentinel, across a failover Sentinel is told to make", () => {
  const fixture = useRedisSentinel({ replicas: 1 });
  const db = usePostgresDatabase();

  it("archives every session ended before and after the failover exactly once, reading the new primary", { timeout: 180_000 }, async () => {
    const sentinel = fixture.setup;
    const [primary, replica] = sentinel.nodes;
    const [asked] = sentinel.sentinels;
    assert.ok(primary !== undefined && replica !== undefined && asked !== undefined);
    const prefix = "sdarchive:";
    const store = new RedisStore({ sentinel: sentinel.target, keyPrefix: prefix, limits: { maxDataKeys: 10, archiveRetentionMs: 600_000, expiryGraceMs: 600_000 }, commandTimeoutMs: 2000 });
    const archive = new PgArchive({ url: db.url, poolSize: 2, timeoutMs: 10_000 });
    const group = new RedisEventGroup({ target: { sentinel: sentinel.target }, keyPrefix: prefix, group: "archive", consumer: "sink-1", commandTimeoutMs: 2000, maxBlockMs: 200 });
    const sink = new ArchiveSink({ group, archive, batchSize: 50, claimIdleMs: 2000, blockMs: 200 });
    sink.start();
    const control = asked.client();
    const listener = asked.client();
    const old = primary.client();
    const archivedOnce = async (ids: readonly string[]): Promise<boolean> => {
      const rows = await db.query<{ session_id: string; n: string }>("SELECT session_id, count(*) AS n FROM archived_sessions GROUP BY session_id");
      const seen = new Map(rows.rows.map((r) => [r.session_id, Number(r.n)]));
      for (const [id, n] of seen) assert.equal(n, 1, `session ${id} archived ${n} times`);
      return ids.every((id) => seen.has(id));
    };
    const waitArchived = async (ids: readonly string[], what: string): Promise<void> => {
      const deadline = Date.now() + RECOVERY_LIMIT_MS;
      while (!(await archivedOnce(ids).catch(() => false))) {
        assert.ok(Date.now() < deadline, `${what} within ${RECOVERY_LIMIT_MS} ms`);
        await sleep(100);
      }
    };
    /** Creates and closes n sessions, retrying calls refused while the store moves; returns the ids whose close was acknowledged. */
    const endSessions = async (n: number): Promise<string[]> => {
      const ids: string[] = [];
      const deadline = Date.now() + RECOVERY_LIMIT_MS;
      while (ids.length < n) {
        try {
          const { session } = await store.create({ tenant: TENANT, userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 600_000, metadata: "{}", requestId: "" });
          await store.close(TENANT, session.sessionId);
          ids.push(session.sessionId);
        } catch (error) {
          if (!isSessionError(error) || Date.now() > deadline) throw error;
          await sleep(50);
        }
      }
      return ids;
    };
    try {
      await sink.schemaReady;
      const before = await endSessions(30);
      await waitArchived(before, "the sessions ended before the failover are archived");
      await sentinel.waitReplicated();
      // The old primary refuses to be demoted (Sentinel's REPLICAOF): it keeps serving as a primary, so only
      // following +switch-master, not a READONLY reply or a broken connection, takes the sink to the new one.
      await old.call("ACL", "SETUSER", "default", "-replicaof", "-slaveof");
      await requestFailover(sentinel, control, listener, replica.port);
      await sleep(500);
      const afterwards = await endSessions(30);
      await waitArchived([...before, ...afterwards], "the sessions ended after the failover are archived");
      const promoted = replica.client();
      try {
        // Their events are on the new primary: the sink read them there.
        const keys = new RedisKeys(prefix, TENANT);
        for (const id of afterwards) assert.equal(await promoted.exists(keys.archive(id)), 1, "ended on the new primary");
        const pending = (await promoted.call("XPENDING", new RedisKeys(prefix, "").events(), "archive")) as unknown[];
        assert.equal(Number(pending[0]), 0, "nothing left pending in the new primary's group");
      } finally {
        promoted.disconnect();
      }
      assert.equal(sink.state, "running");
      assert.match(await old.info("replication"), /^role:master/m, "the old primary was never demoted");
    } finally {
      await old.call("ACL", "SETUSER", "default", "+replicaof", "+slaveof").catch(() => {});
      old.disconnect();
      control.disconnect();
      listener.disconnect();
      await sink.stop();
      await archive.close();
      await store.dispose();
    }
  });
});

/** Expires what is due until `sessionId` is among it, within a bound generous enough for a loaded machine. */
async function expiresFromDueQueue(store: SessionStore, sessionId: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const expired = await store.expireDue(100).catch(() => []);
    if (expired.some((r) => r.sessionId === sessionId)) return;
    assert.ok(Date.now() < deadline, "the session expired from the new primary's due queue");
    await sleep(50);
  }
}
