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
import type { Cluster, Redis } from "ioredis";
import type { Logger } from "pino";
import { compareEventIds } from "../store/event-id.js";
import { decodeStreamEntry } from "../store/redis/event-codec.js";
import { RedisKeys } from "../store/redis/keys.js";
import { followSwitchMaster, redisClient, type RedisTarget } from "../store/redis/connections.js";
import type { StoredEvent } from "../store/store.js";

export interface RedisEventGroupOptions {
  readonly target: RedisTarget;
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
  /**
   * One partition's log on a connection the caller owns (a Redis Cluster, see
   * partitioned-event-group.ts) instead of a connection of its own to `url`.
   */
  readonly stream?: { readonly connection: Redis | Cluster; readonly key: string };
  /**
   * Turns a decoded event into the one callers know (encryption on: names
   * opened, see store/sealed-store.ts); throws for an entry that does not
   * open, which is then malformed. Absent: events as decoded.
   */
  readonly openEvent?: (event: StoredEvent) => StoredEvent;
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
  /** Entries the log holds that no consumer has been handed yet. */
  readonly undelivered: number;
  /** The group's position: the last entry delivered to any consumer. */
  readonly lastDelivered: string;
  /** Entries after that position that the log trimmed before they were delivered: lost to the archive. */
  readonly trimmedUndelivered: number;
}

export class RedisEventGroup {
  private readonly redis: Redis | Cluster;
  /** Whether close() leaves the connection to its owner. */
  private readonly shared: boolean;
  private readonly key: string;
  private readonly group: string;
  private readonly consumer: string;

  private readonly openEvent: OpenEvent;
  /** Through Sentinel: stops following +switch-master. */
  private readonly stopSwitchWatch: (() => void) | undefined;

  constructor(options: RedisEventGroupOptions) {
    this.openEvent = options.openEvent ?? ((event) => event);
    this.key = options.stream?.key ?? new RedisKeys(options.keyPrefix, "").events();
    this.group = options.group;
    this.consumer = options.consumer;
    this.shared = options.stream !== undefined;
    if (options.stream !== undefined) {
      this.redis = options.stream.connection;
      this.stopSwitchWatch = undefined;
      return;
    }
    const redis = redisClient(options.target, {
      // Commands wait for a reconnect (bounded by commandTimeout) instead of failing at once.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.commandTimeoutMs + options.maxBlockMs,
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 1000),
      lazyConnect: true,
    });
    this.redis = redis;
    options.onConnection?.(redis);
    redis.on("error", (err: Error) => options.logger?.debug({ err: err.message }, "archive redis connection error"));
    // A primary that is alive when the sentinels switch keeps serving (reads, acknowledgements) until it is demoted, seconds later.
    this.stopSwitchWatch =
      options.target.sentinel === undefined
        ? undefined
        : followSwitchMaster(
            options.target.sentinel,
            () => [redis],
            (primary) => options.logger?.warn({ primary }, "archive: redis sentinel announced a new primary; reconnecting"),
          );
  }

  /**
   * Creates the group at the start of the log (everything the log still holds
   * gets archived) unless it exists. Its read counter starts at the entries
   * trimmed before it existed, so that they are not taken for entries it lost.
   */
  async ensureGroup(): Promise<void> {
    if (this.redis.status === "wait") await this.redis.connect().catch(() => {});
    const log = await this.streamInfo();
    const trimmedBefore = log === undefined ? 0 : Math.max(0, log.added - log.length);
    try {
      await this.redis.call("XGROUP", "CREATE", this.key, this.group, "0", "MKSTREAM", "ENTRIESREAD", trimmedBefore);
    } catch (error) {
      if (!(error instanceof Error && error.message.startsWith("BUSYGROUP"))) throw error;
    }
  }

  /** Entries delivered to this consumer earlier and not acknowledged (after a restart under the same name). */
  async readPending(count: number): Promise<GroupEntry[]> {
    const reply = await this.redis.call("XREADGROUP", "GROUP", this.group, this.consumer, "COUNT", count, "STREAMS", this.key, "0");
    return entriesOf(reply, this.openEvent);
  }

  /** New entries for this consumer, waiting up to blockMs for the first. */
  async readNew(count: number, blockMs: number): Promise<GroupEntry[]> {
    const reply = await this.redis.call("XREADGROUP", "GROUP", this.group, this.consumer, "COUNT", count, "BLOCK", Math.max(1, blockMs), "STREAMS", this.key, ">");
    return entriesOf(reply, this.openEvent);
  }

  /** New entries for this consumer, without waiting. */
  async readNewNow(count: number): Promise<GroupEntry[]> {
    const reply = await this.redis.call("XREADGROUP", "GROUP", this.group, this.consumer, "COUNT", count, "STREAMS", this.key, ">");
    return entriesOf(reply, this.openEvent);
  }

  /** Takes over entries pending with any consumer for at least minIdleMs, scanning from `start`. */
  async claimIdle(minIdleMs: number, count: number, start: string): Promise<ClaimResult> {
    const reply = await this.redis.call("XAUTOCLAIM", this.key, this.group, this.consumer, minIdleMs, start, "COUNT", count);
    if (!Array.isArray(reply)) return { entries: [], next: "0-0", trimmed: 0 };
    const [next, raw, deleted] = reply as [unknown, unknown, unknown];
    return {
      entries: decodeAll(raw, this.openEvent),
      next: typeof next === "string" ? next : "0-0",
      trimmed: Array.isArray(deleted) ? deleted.length : 0,
    };
  }

  async ack(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.redis.call("XACK", this.key, this.group, ...ids);
  }

  async stats(): Promise<GroupStats | undefined> {
    const log = await this.streamInfo();
    const reply = await this.redis.call("XINFO", "GROUPS", this.key);
    if (!Array.isArray(reply) || log === undefined) return undefined;
    for (const group of reply as unknown[]) {
      const fields = pairs(group);
      if (fields.get("name") !== this.group) continue;
      const lag = fields.get("lag");
      const lastDelivered = String(fields.get("last-delivered-id") ?? "0-0");
      const read = Number(fields.get("entries-read"));
      // Trimming removes the oldest entries only: while the group has not reached the first retained entry, every
      // retained entry is undelivered, and whatever else it has not read was trimmed before it could.
      const behind = log.first !== undefined && compareEventIds(lastDelivered, log.first) < 0;
      const trimmedUndelivered = behind && Number.isSafeInteger(read) ? Math.max(0, log.added - read - log.length) : 0;
      // Redis's lag counts entries trimmed before delivery for ever after; bound it by what the log holds.
      const undelivered = compareEventIds(lastDelivered, log.last) >= 0 ? 0 : behind ? log.length : Math.min(typeof lag === "number" ? lag : log.length, log.length);
      return {
        pending: Number(fields.get("pending") ?? 0),
        undelivered,
        lastDelivered,
        trimmedUndelivered,
      };
    }
    return undefined;
  }

  /** Length, entries ever added and the first retained id of the log; undefined when it does not exist. */
  private async streamInfo(): Promise<{ length: number; added: number; first: string | undefined; last: string } | undefined> {
    let reply: unknown;
    try {
      reply = await this.redis.call("XINFO", "STREAM", this.key);
    } catch (error) {
      if (error instanceof Error && /no such key/i.test(error.message)) return undefined;
      throw error;
    }
    const fields = pairs(reply);
    const recorded = fields.get("recorded-first-entry-id");
    const firstEntry = fields.get("first-entry");
    const first = typeof recorded === "string" && recorded !== "0-0" ? recorded : Array.isArray(firstEntry) && typeof firstEntry[0] === "string" ? firstEntry[0] : undefined;
    const last = fields.get("last-generated-id");
    return { length: Number(fields.get("length") ?? 0), added: Number(fields.get("entries-added") ?? 0), first, last: typeof last === "string" ? last : "0-0" };
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
    this.stopSwitchWatch?.();
    if (!this.shared) this.redis.disconnect();
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
function entriesOf(reply: unknown, open: OpenEvent): GroupEntry[] {
  if (!Array.isArray(reply)) return [];
  const first = reply[0] as unknown;
  if (typeof first === "string" || Buffer.isBuffer(first)) return decodeAll(reply[1], open);
  return Array.isArray(first) ? decodeAll(first[1], open) : [];
}

type OpenEvent = (event: StoredEvent) => StoredEvent;

function decodeAll(raw: unknown, open: OpenEvent): GroupEntry[] {
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
      out.push({ id, event: open(decodeStreamEntry(entry)) });
    } catch {
      out.push({ id, problem: "malformed" });
    }
  }
  return out;
}
