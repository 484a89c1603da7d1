/**
 * Waiting for a new entry in any of several partitions' event logs
 * (keys.ts), without polling them: one blocking XREAD per partition, each on
 * a connection of its own (a blocking read cannot span hash slots, and a
 * connection blocked on one log serves nothing else). On a Redis Cluster each
 * connection is an ioredis Cluster of its own, so it follows MOVED, ASK and a
 * failover to whichever primary holds its partition's slot.
 *
 * It is a wake-up only: readers still read through their own path (merged
 * reads, consumer groups), which keeps their ordering and delivery rules. A
 * wait names, for each partition, the last id its caller has seen there; an
 * entry after it (also one added before the wait began) ends the wait. A
 * connection that fails ends waits too, after a pause, so that readers fall
 * back to reading on their own schedule rather than to silence.
 */
import type { Cluster, Redis } from "ioredis";
import type { Logger } from "pino";
import { WakeWaiters } from "../wake-waiters.js";

/** How long one XREAD blocks before it is issued again (an idle partition costs one command per this). */
export const WAKE_BLOCK_MS = 5000;
/** Pause after a failed XREAD before waiters are woken (and it is issued again). */
const FAILED_PAUSE_MS = 250;

export interface PartitionWakeOptions {
  /** The log key of each partition. */
  readonly keys: readonly string[];
  /** A new connection for one partition's blocking reads (closed by close()). */
  readonly open: (partition: number) => Redis | Cluster;
  /** Bounds one command, given the block time as slack (see RedisConnections.within). */
  readonly within: <T>(pending: Promise<T>, slackMs: number) => Promise<T>;
  readonly logger?: Logger | undefined;
}

interface Slot {
  readonly key: string;
  readonly redis: Redis | Cluster;
  /** The id the next XREAD reads after (the latest a waiter named). */
  want: string;
  reading: boolean;
  pausing: boolean;
}

export class PartitionWake {
  private readonly slots: Slot[];
  private readonly waiters = new WakeWaiters();
  private readonly within: PartitionWakeOptions["within"];
  private readonly logger: Logger | undefined;
  private closed = false;

  constructor(options: PartitionWakeOptions) {
    this.within = options.within;
    this.logger = options.logger;
    this.slots = options.keys.map((key, p) => ({ key, redis: options.open(p), want: "0-0", reading: false, pausing: false }));
  }

  /**
   * Resolves true once some partition p has an entry after after[p], after a
   * failed read (see the file comment) or on close; false at `until` (epoch
   * ms) or when `signal` aborts.
   */
  wait(after: readonly string[], until: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed) return Promise.resolve(true);
    if (signal?.aborted === true) return Promise.resolve(false);
    const waiting = this.waiters.wait(until, signal);
    this.slots.forEach((slot, p) => {
      // A read already blocked after an older id ends at once if the log moved past it: no read is replaced.
      slot.want = after[p] ?? slot.want;
      if (!slot.reading && !slot.pausing) this.read(slot);
    });
    return waiting;
  }

  close(): void {
    this.closed = true;
    this.wakeAll();
    for (const slot of this.slots) slot.redis.disconnect();
  }

  private read(slot: Slot): void {
    slot.reading = true;
    const pending = slot.redis.xread("COUNT", 1, "BLOCK", WAKE_BLOCK_MS, "STREAMS", slot.key, slot.want);
    this.within(pending, WAKE_BLOCK_MS).then(
      (reply) => {
        slot.reading = false;
        if (this.closed) return;
        if (reply !== null && reply.length > 0) this.wakeAll();
        else if (this.waiters.size > 0) this.read(slot);
      },
      (error: unknown) => {
        slot.reading = false;
        if (this.closed) return;
        this.logger?.debug({ err: error instanceof Error ? error.message : String(error) }, "event log wake-up read failed");
        // A read that outlived its deadline may still hold the connection blocked: start it afresh.
        if (slot.redis.status === "ready") slot.redis.disconnect(true);
        slot.pausing = true;
        setTimeout(() => {
          slot.pausing = false;
          this.wakeAll();
        }, FAILED_PAUSE_MS).unref();
      },
    );
  }

  private wakeAll(): void {
    this.waiters.wakeAll();
  }
}
