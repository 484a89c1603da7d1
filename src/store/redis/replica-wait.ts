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
 *
 * A write that was not confirmed WAS applied on the primary; it may just not
 * survive a failover. The caller gets UNAVAILABLE with NOT_REPLICATED_MESSAGE
 * (README "Running on Redis Sentinel" says what a retry of each call does).
 *
 * Which connection made a write is asked of `connectionFor` with a key of the
 * write, so a store on a Redis Cluster can route WAIT to the node owning it.
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
}

/** The connection that will carry a write with this key. */
export type WriteConnectionFor = (key: string) => Redis;

/** Where a write went: the connection and the socket it had when the write was sent. */
export interface WriteMark {
  readonly redis: Redis;
  readonly stream: unknown;
}

interface PendingWait {
  readonly stream: unknown;
  readonly result: Promise<number>;
  /** Some joined call wrote nothing itself: publish first. */
  advance: boolean;
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
    return { redis, stream: redis.stream };
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
    // A reconnect since the write: this connection's WAIT would not cover it.
    if (redis.stream !== stream || redis.status !== "ready") return Promise.reject(new Error("connection changed"));
    const scheduled = this.scheduled.get(redis);
    if (scheduled !== undefined && scheduled.stream === stream) {
      scheduled.advance ||= wroteNothing;
      return scheduled.result;
    }
    const result: Promise<number> = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      const sending = this.scheduled.get(redis);
      if (sending?.result === result) this.scheduled.delete(redis);
      if (redis.stream !== stream || redis.status !== "ready") throw new Error("connection changed");
      return this.wait(redis, sending?.advance ?? wroteNothing);
    });
    // Rejections reach every joined caller through `result`; none is left unhandled here.
    result.catch(() => {});
    this.scheduled.set(redis, { stream, result, advance: wroteNothing });
    return result;
  }

  private async wait(redis: Redis, advance: boolean): Promise<number> {
    const { replicas, timeoutMs, slackMs, advanceChannel } = this.options;
    // Sent before the WAIT on the same connection, so the WAIT counts from the primary's offset after it.
    if (advance) redis.publish(advanceChannel, "").catch(() => {});
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
