/**
 * REDIS_WAIT_REPLICAS: after a write a caller's acknowledgement depends on,
 * Redis `WAIT numreplicas timeout` on the connection that made the write, so
 * the call succeeds only once that many replicas hold it and a failover to
 * one of them cannot lose it.
 *
 * WAIT covers every write its own client (connection) made before it, so:
 * - it must go over the very socket the write went over: after a reconnect,
 *   the new client has written nothing and WAIT would answer at once; the
 *   socket is remembered before the write (mark) and compared before WAIT;
 * - one WAIT confirms every write whose reply came before it was sent: writes
 *   that finish in the same turn of the event loop share one WAIT (a blocked
 *   WAIT holds the connection, and commands behind it wait with it);
 * - a call that succeeds without writing (a create replayed by its request
 *   id) relies on a write this connection may not have made (the first
 *   attempt, before a reconnect). Whether a WAIT covers writes of other
 *   connections depends on the Redis version (a fresh connection's WAIT is
 *   met at once); a PUBLISH on `advanceChannel` first, which Redis
 *   replicates, makes it cover everything the primary had, on any version.
 *   A Redis Cluster does not replicate PUBLISH (it travels over the cluster
 *   bus), so there `advanceWrite` makes a small replicated write instead.
 *
 * A write that was not confirmed WAS applied on the primary; it may just not
 * survive a failover. The caller gets UNAVAILABLE with NOT_REPLICATED_MESSAGE
 * (README "Running on Redis Sentinel" says what a retry of each call does).
 *
 * Which connection made a write is asked of `connectionFor` with a key of the
 * write, so a store on a Redis Cluster routes WAIT to the primary owning the
 * key's slot (WAIT counts only that primary's replicas). A slot that moved to
 * another primary between the write and the WAIT fails the call as not
 * confirmed: the old primary's WAIT would not cover it.
 */
import type { Redis } from "ioredis";
import { SessionError } from "../../domain/errors.js";
import { loopAwareDeadline, type Deadline } from "../../observability/loop-aware-deadline.js";

/** What the caller is told when fewer replicas than asked confirmed the write in time. */
export const NOT_REPLICATED_MESSAGE =
  "the write was applied on the Redis primary, but fewer replicas than REDIS_WAIT_REPLICAS confirmed it in time: " +
  "it may not survive a failover (retry as after UNKNOWN: with the same request_id or expected_version)";

export interface ReplicaWaitOptions {
  /** Replicas that must confirm each write (REDIS_WAIT_REPLICAS, at least 1). */
  readonly replicas: number;
  /** WAIT's own timeout (REDIS_WAIT_TIMEOUT). */
  readonly timeoutMs: number;
  /** Added to timeoutMs for the reply of a WAIT that timed out to come back. */
  readonly slackMs: number;
  /** A Pub/Sub channel nobody listens to, published to before a WAIT that must cover writes of other connections. */
  readonly advanceChannel: string;
  /** Instead of the PUBLISH: a replicated write on `redis` in the slot of `key` (on a Redis Cluster). */
  readonly advanceWrite?: ((redis: Redis, key: string) => Promise<unknown>) | undefined;
}

/** The connection that will carry a write with this key. */
export type WriteConnectionFor = (key: string) => Redis;

/** Where a write went: the connection and the socket it had when the write was sent. */
export interface WriteMark {
  readonly key: string;
  readonly redis: Redis;
  readonly stream: unknown;
}

interface PendingWait {
  readonly stream: unknown;
  readonly result: Promise<number>;
  /** A key of a joined call that wrote nothing itself (advance first); undefined: none did. */
  advance: string | undefined;
}

export class ReplicaWait {
  /** Per connection: the WAIT that is scheduled and not yet sent, which later writes join. */
  private readonly scheduled = new Map<Redis, PendingWait>();

  constructor(
    private readonly options: ReplicaWaitOptions,
    private readonly connectionFor: WriteConnectionFor,
  ) {}

  /** Taken just before the write is sent on the connection for `key`. */
  mark(key: string): WriteMark {
    const redis = this.connectionFor(key);
    return { key, redis, stream: redis.stream };
  }

  /**
   * Resolves once enough replicas confirmed the marked write; else rejects
   * with UNAVAILABLE (NOT_REPLICATED_MESSAGE). `wroteNothing`: the call
   * succeeded on state an earlier write made (a replayed create).
   */
  async confirm(mark: WriteMark, wroteNothing = false): Promise<void> {
    let acknowledged: number;
    try {
      acknowledged = await this.join(mark, wroteNothing);
    } catch {
      throw new SessionError("unavailable", NOT_REPLICATED_MESSAGE);
    }
    if (acknowledged < this.options.replicas) throw new SessionError("unavailable", NOT_REPLICATED_MESSAGE);
  }

  private join(mark: WriteMark, wroteNothing: boolean): Promise<number> {
    const { redis, stream } = mark;
    const advance = wroteNothing ? mark.key : undefined;
    // A reconnect since the write: this connection's WAIT would not cover it.
    if (redis.stream !== stream || redis.status !== "ready") return Promise.reject(new Error("connection changed"));
    // The key's slot moved to another primary (a cluster): the write may have gone there.
    if (!this.stillOwns(mark)) return Promise.reject(new Error("slot moved"));
    const scheduled = this.scheduled.get(redis);
    if (scheduled !== undefined && scheduled.stream === stream) {
      scheduled.advance ??= advance;
      return scheduled.result;
    }
    const result: Promise<number> = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      const sending = this.scheduled.get(redis);
      if (sending?.result === result) this.scheduled.delete(redis);
      if (redis.stream !== stream || redis.status !== "ready") throw new Error("connection changed");
      return this.wait(redis, sending === undefined ? advance : sending.advance);
    });
    // Rejections reach every joined caller through `result`; none is left unhandled here.
    result.catch(() => {});
    this.scheduled.set(redis, { stream, result, advance });
    return result;
  }

  private stillOwns(mark: WriteMark): boolean {
    try {
      return this.connectionFor(mark.key) === mark.redis;
    } catch {
      return false;
    }
  }

  private async wait(redis: Redis, advanceKey: string | undefined): Promise<number> {
    const { replicas, timeoutMs, slackMs, advanceChannel, advanceWrite } = this.options;
    // Sent before the WAIT on the same connection, so the WAIT counts from the primary's offset after it.
    if (advanceKey !== undefined) {
      const advancing = advanceWrite === undefined ? redis.publish(advanceChannel, "") : advanceWrite(redis, advanceKey);
      advancing.catch(() => {});
    }
    const pending = redis.wait(replicas, timeoutMs);
    pending.catch(() => {});
    let deadline: Deadline | undefined;
    const expired = new Promise<never>((_, reject) => {
      // Counts time the reply could have been read, as every store call does (observability/loop-aware-deadline.ts).
      deadline = loopAwareDeadline(timeoutMs + slackMs, () => reject(new Error("WAIT got no reply")));
    });
    try {
      return await Promise.race([pending, expired]);
    } finally {
      deadline?.cancel();
    }
  }
}
