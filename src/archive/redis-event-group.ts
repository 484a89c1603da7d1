/**
 * The archive sink's port to the Redis event log: a consumer group on the log
 * stream (`P ev`, see src/store/redis/keys.ts), on a connection of its own so
 * that its blocking reads never stall the store's commands or the event hub.
 *
 * A consumer group gives at-least-once delivery across replicas: each entry
 * goes to one consumer and stays in that consumer's pending list until XACK;
 * entries of a consumer that died are taken over with XAUTOCLAIM once idle.
 * The group does not hold entries back from trimming: the log's retention
 * (WATCH_RETENTION_EVENTS, WATCH_RETENTION) bounds how long entries wait.
 * An entry trimmed before it was acknowledged comes back without its fields
 * and is reported as lost.
 */
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { decodeStreamEntry } from "../store/redis/event-codec.js";
import { RedisKeys } from "../store/redis/keys.js";
import type { StoredEvent } from "../store/store.js";

export interface RedisEventGroupOptions {
  readonly url: string;
  readonly keyPrefix: string;
  readonly group: string;
  /** This process's name in the group. */
  readonly consumer: string;
  /** Bound on one command (a blocking read gets its block time on top). */
  readonly commandTimeoutMs: number;
  /** Longest block of readNew. */
  readonly maxBlockMs: number;
  readonly logger?: Logger;
  /** Called with the connection before it emits anything (metrics). */
  readonly onConnection?: (client: Redis) => void;
}

/** One delivered entry: its event, or why there is none. */
export type GroupEntry =
  | { readonly id: string; readonly event: StoredEvent }
  /** "trimmed": dropped from the log before it was acknowledged; "malformed": not an event this service wrote. */
  | { readonly id: string; readonly event?: undefined; readonly problem: "trimmed" | "malformed" };

export interface ClaimResult {
  readonly entries: GroupEntry[];
  /** Where the next claim scan continues ("0-0": the scan went round). */
  readonly next: string;
  /** Pending ids whose entries were trimmed; Redis drops them from the pending list. */
  readonly trimmed: number;
}

export interface GroupStats {
  /** Entries delivered to some consumer and not yet acknowledged. */
  readonly pending: number;
  /** Entries not yet delivered to any consumer (undefined when Redis cannot tell). */
  readonly undelivered: number | undefined;
}

export class RedisEventGroup {
  private readonly redis: Redis;
  private readonly key: string;
  private readonly group: string;
  private readonly consumer: string;

  constructor(options: RedisEventGroupOptions) {
    this.key = new RedisKeys(options.keyPrefix, "").events();
    this.group = options.group;
    this.consumer = options.consumer;
    this.redis = new Redis(options.url, {
      // Commands wait for a reconnect (bounded by commandTimeout) instead of failing at once.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.commandTimeoutMs + options.maxBlockMs,
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1000),
      lazyConnect: true,
    });
    options.onConnection?.(this.redis);
    this.redis.on("error", (err: Error) => options.logger?.debug({ err: err.message }, "archive redis connection error"));
  }

  /** Creates the group at the start of the log (everything the log still holds gets archived) unless it exists. */
  async ensureGroup(): Promise<void> {
    if (this.redis.status === "wait") await this.redis.connect().catch(() => {});
    try {
      await this.redis.call("XGROUP", "CREATE", this.key, this.group, "0", "MKSTREAM");
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith("BUSYGROUP"))) throw error;
    }
  }

  /** Entries delivered to this consumer earlier and not acknowledged (after a restart under the same name). */
  async readPending(count: number): Promise<GroupEntry[]> {
    const reply = await this.redis.call("XREADGROUP", "GROUP", this.group, this.consumer, "COUNT", count, "STREAMS", this.key, "0");
    return entriesOf(reply);
  }

  /** New entries for this consumer, waiting up to blockMs for the first. */
  async readNew(count: number, blockMs: number): Promise<GroupEntry[]> {
    const reply = await this.redis.call("XREADGROUP", "GROUP", this.group, this.consumer, "COUNT", count, "BLOCK", Math.max(1, blockMs), "STREAMS", this.key, ">");
    return entriesOf(reply);
  }

  /** Takes over entries pending with any consumer for at least minIdleMs, scanning from `start`. */
  async claimIdle(minIdleMs: number, count: number, start: string): Promise<ClaimResult> {
    const reply = await this.redis.call("XAUTOCLAIM", this.key, this.group, this.consumer, minIdleMs, start, "COUNT", count);
    if (!Array.isArray(reply)) return { entries: [], next: "0-0", trimmed: 0 };
    const [next, raw, deleted] = reply as [unknown, unknown, unknown];
    return {
      entries: decodeAll(raw),
      next: typeof next === "string" ? next : "0-0",
      trimmed: Array.isArray(deleted) ? deleted.length : 0,
    };
  }

  async ack(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.redis.call("XACK", this.key, this.group, ...ids);
  }

  async stats(): Promise<GroupStats | undefined> {
    const reply = await this.redis.call("XINFO", "GROUPS", this.key);
    if (!Array.isArray(reply)) return undefined;
    for (const group of reply as unknown[]) {
      const fields = pairs(group);
      if (fields.get("name") !== this.group) continue;
      const lag = fields.get("lag");
      return { pending: Number(fields.get("pending") ?? 0), undelivered: typeof lag === "number" ? lag : undefined };
    }
    return undefined;
  }

  /**
   * Removes consumers (other than this one) that hold no pending entry and
   * have been idle for idleMs: replicas that are gone. Returns how many.
   */
  async reapConsumers(idleMs: number): Promise<number> {
    const reply = await this.redis.call("XINFO", "CONSUMERS", this.key, this.group);
    if (!Array.isArray(reply)) return 0;
    let removed = 0;
    for (const consumer of reply as unknown[]) {
      const fields = pairs(consumer);
      const name = fields.get("name");
      if (typeof name !== "string" || name === this.consumer) continue;
      if (Number(fields.get("pending")) === 0 && Number(fields.get("idle")) >= idleMs) {
        await this.redis.call("XGROUP", "DELCONSUMER", this.key, this.group, name);
        removed++;
      }
    }
    return removed;
  }

  close(): void {
    this.redis.disconnect();
  }
}

/** Whether a Redis error says the group (or the whole log) is gone: Redis lost its data. */
export function isMissingGroup(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOGROUP");
}

function pairs(flat: unknown): Map<string, unknown> {
  const map = new Map<string, unknown>();
  if (!Array.isArray(flat)) return map;
  for (let i = 0; i + 1 < flat.length; i += 2) map.set(String(flat[i]), flat[i + 1]);
  return map;
}

/**
 * XREADGROUP's reply for the one stream read: null, or its entries as
 * [key, entries] (a RESP3 map, flattened by ioredis's call()) or
 * [[key, entries]] (RESP2).
 */
function entriesOf(reply: unknown): GroupEntry[] {
  if (!Array.isArray(reply)) return [];
  const first = reply[0] as unknown;
  if (typeof first === "string" || Buffer.isBuffer(first)) return decodeAll(reply[1]);
  return Array.isArray(first) ? decodeAll(first[1]) : [];
}

function decodeAll(raw: unknown): GroupEntry[] {
  if (!Array.isArray(raw)) return [];
  const out: GroupEntry[] = [];
  for (const entry of raw as unknown[]) {
    if (!Array.isArray(entry) || typeof entry[0] !== "string") continue;
    const id = entry[0];
    if (entry[1] === null || entry[1] === undefined) {
      out.push({ id, problem: "trimmed" });
      continue;
    }
    try {
      out.push({ id, event: decodeStreamEntry(entry) });
    } catch {
      out.push({ id, problem: "malformed" });
    }
  }
  return out;
}
