/**
 * The load generator: a child process of bench/run.ts, so that the callers
 * have their own event loop and CPU instead of sharing the server's (on one
 * event loop, client and server would take turns and the numbers would lie).
 *
 * It holds the pools of session ids between phases: CreateSession fills the
 * pool, GetSession and ExtendSession reuse it round-robin, CloseSession uses
 * it up. The same goes for the keys of the direct-ioredis baseline.
 */
import { randomUUID } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { AccessLevel } from "../gen/session/v1/session_pb.js";
import { createSessionClient, createSessionTransport, type SessionClient } from "@sessiond/client";
import { benchMetadata, benchDataSource, benchUserId } from "./workload.js";
import { PoolExhausted, runPhase, type PhaseSample, type PhaseSpec } from "./phase.js";

/** Parent → child. */
export type LoadRequest =
  | { readonly type: "init"; readonly baseUrl: string; readonly redisUrl: string }
  | { readonly type: "run"; readonly spec: PhaseSpec }
  /** Untimed set-up before a phase that uses sessions up: create sessions until the pool holds `size`. */
  | { readonly type: "fill"; readonly spec: PhaseSpec; readonly size: number }
  | { readonly type: "exit" };

/** Child → parent. */
export type LoadReply =
  | { readonly type: "ready" }
  | { readonly type: "result"; readonly sample: PhaseSample }
  | { readonly type: "filled" }
  | { readonly type: "failed"; readonly message: string };

/** Deadline of one benchmark call: long enough never to fire under load, short enough to end a hung run. */
const CALL_TIMEOUT_MS = 10_000;
const SESSION_TTL = { seconds: 3600n, nanos: 0 };
const EXTEND_TTL = { seconds: 1800n, nanos: 0 };
const DIRECT_TTL_MS = 3_600_000;
const DIRECT_EXTEND_MS = 1_800_000;
const DIRECT_PREFIX = "bench:direct:";

/** Session ids (or keys) created and not closed yet. */
class Pool {
  private readonly ids: string[] = [];
  private next = 0;
  get size(): number {
    return this.ids.length;
  }
  add(id: string): void {
    this.ids.push(id);
  }
  /** Round-robin, for operations that leave the session in place. */
  pick(): string {
    const id = this.ids[this.next++ % Math.max(1, this.ids.length)];
    if (id === undefined) throw new PoolExhausted("no session to act on");
    return id;
  }
  /** Removes one, for operations that end the session. */
  take(): string {
    const id = this.ids.pop();
    if (id === undefined) throw new PoolExhausted("every session has been used");
    return id;
  }
}

class LoadGenerator {
  private readonly sessions: SessionClient;
  private readonly health: Client<typeof Health>;
  private readonly redis: Redis;
  private readonly servicePool = new Pool();
  private readonly directPool = new Pool();
  private serial = 0;

  constructor(baseUrl: string, redisUrl: string) {
    this.sessions = createSessionClient(baseUrl, { timeoutMs: CALL_TIMEOUT_MS });
    // The same transport settings as the session client, so that Check measures the same client and protocol path.
    this.health = createClient(Health, createSessionTransport(baseUrl, { timeoutMs: CALL_TIMEOUT_MS }));
    this.redis = new Redis(redisUrl, { commandTimeout: CALL_TIMEOUT_MS });
  }

  async run(spec: PhaseSpec): Promise<PhaseSample> {
    return runPhase(spec, this.operation(spec));
  }

  /** Creates sessions, untimed, until the pool of spec.target holds `size`. */
  async fill(spec: PhaseSpec, size: number): Promise<void> {
    const pool = spec.target === "direct" ? this.directPool : this.servicePool;
    const wanted = size - pool.size;
    if (wanted <= 0) return;
    if (spec.target === "direct") {
      await this.directBulkCreate(wanted);
      return;
    }
    const create = this.serviceOperation("create");
    let left = wanted;
    const caller = async (): Promise<void> => {
      while (left > 0) {
        left--;
        await create();
      }
    };
    await Promise.all(Array.from({ length: spec.concurrency }, caller));
  }

  /** The same keys the direct create makes, written in large pipelines: set-up only, not measured. */
  private async directBulkCreate(count: number): Promise<void> {
    const CHUNK = 2000;
    for (let done = 0; done < count; done += CHUNK) {
      const pipeline = this.redis.pipeline();
      for (let i = done; i < Math.min(count, done + CHUNK); i++) {
        const key = `${DIRECT_PREFIX}${randomUUID()}`;
        pipeline.hset(key, directRecord(this.serial++)).pexpire(key, DIRECT_TTL_MS);
        this.directPool.add(key);
      }
      await pipeline.exec();
    }
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private operation(spec: PhaseSpec): () => Promise<void> {
    switch (spec.target) {
      case "health":
        return async () => {
          await this.health.check({ service: "" });
        };
      case "service":
        return this.serviceOperation(spec.op);
      case "direct":
        return this.directOperation(spec.op);
    }
  }

  private serviceOperation(op: PhaseSpec["op"]): () => Promise<void> {
    const pool = this.servicePool;
    switch (op) {
      case "create":
        return async () => {
          const n = this.serial++;
          const res = await this.sessions.createSession({
            userId: benchUserId(n),
            dataSource: benchDataSource(n),
            accessLevel: AccessLevel.WRITE,
            ttl: SESSION_TTL,
            metadata: benchMetadata(n),
          });
          if (res.session === undefined) throw new Error("CreateSession returned no session");
          pool.add(res.session.sessionId);
        };
      case "get":
        return async () => {
          await this.sessions.getSession({ sessionId: pool.pick() });
        };
      case "extend":
        return async () => {
          await this.sessions.extendSession({ sessionId: pool.pick(), ttl: EXTEND_TTL });
        };
      case "close":
        return async () => {
          await this.sessions.closeSession({ sessionId: pool.take() });
        };
      case "check":
        throw new Error("check is a health operation");
    }
  }

  /**
   * The floor: what a backend pays doing the same work itself with ioredis —
   * the record as a hash (same fields as the store's), no indexes, no counters,
   * no archive, no events.
   */
  private directOperation(op: PhaseSpec["op"]): () => Promise<void> {
    const pool = this.directPool;
    const redis = this.redis;
    switch (op) {
      case "create":
        return async () => {
          const n = this.serial++;
          const key = `${DIRECT_PREFIX}${randomUUID()}`;
          const result = await redis.multi().hset(key, directRecord(n)).pexpire(key, DIRECT_TTL_MS).exec();
          if (result === null) throw new Error("MULTI was aborted");
          pool.add(key);
        };
      case "get":
        return async () => {
          const fields = await redis.hgetall(pool.pick());
          if (fields["u"] === undefined) throw new Error("direct get: no such key");
        };
      case "extend":
        return async () => {
          if ((await redis.pexpire(pool.pick(), DIRECT_EXTEND_MS)) !== 1) throw new Error("direct extend: no such key");
        };
      case "close":
        return async () => {
          if ((await redis.del(pool.take())) !== 1) throw new Error("direct close: no such key");
        };
      case "check":
        throw new Error("check is a health operation");
    }
  }
}

/** The record the direct baseline stores: the same fields as the store's live-session hash (see src/store/redis/keys.ts). */
function directRecord(n: number): Record<string, string> {
  const now = Date.now();
  return {
    u: benchUserId(n),
    d: benchDataSource(n),
    l: "write",
    c: String(now),
    e: String(now + DIRECT_TTL_MS),
    a: String(now),
    m: JSON.stringify(benchMetadata(n)),
    v: "1",
  };
}

function send(reply: LoadReply): void {
  process.send?.(reply);
}

let generator: LoadGenerator | undefined;

// The runner is gone (it crashed or was killed): nothing will ask for more, so leave instead of idling forever.
process.on("disconnect", () => process.exit(0));

process.on("message", (message: LoadRequest) => {
  void (async () => {
    try {
      switch (message.type) {
        case "init":
          generator = new LoadGenerator(message.baseUrl, message.redisUrl);
          send({ type: "ready" });
          return;
        case "run":
          if (generator === undefined) throw new Error("run before init");
          send({ type: "result", sample: await generator.run(message.spec) });
          return;
        case "fill":
          if (generator === undefined) throw new Error("fill before init");
          await generator.fill(message.spec, message.size);
          send({ type: "filled" });
          return;
        case "exit":
          await generator?.close();
          process.disconnect();
          process.exit(0);
      }
    } catch (e) {
      send({ type: "failed", message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
    }
  })();
});
