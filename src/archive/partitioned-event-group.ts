/**
 * The archive sink's port to a partitioned event log (src/store/redis/keys.ts:
 * one log per partition, on a Redis Cluster): one consumer group per
 * partition's log, each a RedisEventGroup on a shared Cluster connection.
 * Each entry still goes to one consumer of its partition's group and stays
 * pending until acknowledged, so delivery across service replicas is what it
 * is on one log. A blocking read cannot span hash slots: new entries are read
 * from every partition without blocking, and when none has any the read waits
 * on a blocking read of every partition's log (partition-wake.ts), which ends
 * as soon as any log has an entry past the last one it held.
 *
 * An event id names its partition (its sequence number modulo the partition
 * count, see emit in lua/prelude.ts), which routes acknowledgements. Claim
 * cursors are "<partition>:<id>", "0-0" for the start and the end of a scan.
 */
import { Cluster } from "ioredis";
import type { Logger } from "pino";
import { eventLogKey, Partitioning } from "../store/redis/keys.js";
import { clusterAuth, type RedisClusterTarget } from "../store/redis/connections.js";
import { PartitionWake, WAKE_BLOCK_MS } from "../store/redis/partition-wake.js";
import type { EventGroupPort } from "./archive-sink.js";
import { RedisEventGroup, type ClaimResult, type GroupEntry, type GroupStats, type RedisEventGroupOptions } from "./redis-event-group.js";
import { compareEventIds } from "../store/event-id.js";

export interface PartitionedEventGroupOptions {
  /** The cluster's seed nodes and AUTH. */
  readonly cluster: RedisClusterTarget;
  readonly partitions: number;
  readonly keyPrefix: string;
  readonly group: string;
  readonly consumer: string;
  readonly commandTimeoutMs: number;
  readonly logger?: Logger;
  readonly onConnection?: (client: Cluster) => void;
  /** See RedisEventGroupOptions.openEvent. */
  readonly openEvent?: RedisEventGroupOptions["openEvent"];
}

export class PartitionedEventGroup implements EventGroupPort {
  private readonly cluster: Cluster;
  private readonly groups: RedisEventGroup[];
  private readonly count: number;
  /** Where the next read of new entries starts, so that every partition gets its turn. */
  private next = 0;
  private readonly keys: string[];
  private readonly logger: Logger | undefined;
  private readonly commandTimeoutMs: number;
  /** Opened at the first wait for new entries. */
  private wake: PartitionWake | undefined;
  private closed = false;

  constructor(options: PartitionedEventGroupOptions) {
    const partitions = new Partitioning(options.partitions);
    this.count = partitions.count;
    this.keys = partitions.tags.map((tag) => eventLogKey(options.keyPrefix, tag));
    this.logger = options.logger;
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.cluster = new Cluster(
      options.cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
      {
        enableOfflineQueue: true,
        scaleReads: "master",
        redisOptions: { maxRetriesPerRequest: null, autoResendUnfulfilledCommands: false, commandTimeout: options.commandTimeoutMs, ...clusterAuth(options.cluster) },
        lazyConnect: true,
      },
    );
    options.onConnection?.(this.cluster);
    this.cluster.on("error", (err: Error) => options.logger?.debug({ err: err.message }, "archive redis cluster connection error"));
    this.groups = partitions.tags.map(
      (tag) =>
        new RedisEventGroup({
          target: { url: "" },
          keyPrefix: options.keyPrefix,
          group: options.group,
          consumer: options.consumer,
          commandTimeoutMs: options.commandTimeoutMs,
          maxBlockMs: 0,
          stream: { connection: this.cluster, key: eventLogKey(options.keyPrefix, tag) },
          ...(options.openEvent === undefined ? {} : { openEvent: options.openEvent }),
        }),
    );
  }

  async ensureGroup(): Promise<void> {
    if (this.cluster.status === "wait") await this.cluster.connect().catch(() => {});
    await Promise.all(this.groups.map((g) => g.ensureGroup()));
  }

  async readPending(count: number): Promise<GroupEntry[]> {
    const out: GroupEntry[] = [];
    for (const group of this.groups) {
      if (out.length >= count) break;
      out.push(...(await group.readPending(count - out.length)));
    }
    return out;
  }

  /**
   * New entries of every partition; when there are none, waits up to blockMs
   * for one and returns empty (the caller reads again). Each log's last id is
   * taken before a second look, so an entry added after that look is past
   * it and ends the wait at once.
   */
  async readNew(count: number, blockMs: number): Promise<GroupEntry[]> {
    const until = Date.now() + blockMs;
    const out = await this.readNewNow(count);
    if (out.length > 0) return out;
    const lastIds = await Promise.all(
      this.keys.map(async (key) => {
        const last = await this.cluster.xrevrange(key, "+", "-", "COUNT", 1);
        return last[0]?.[0] ?? "0-0";
      }),
    );
    const again = await this.readNewNow(count);
    if (again.length > 0 || this.closed) return again;
    await this.partitionWake().wait(lastIds, until);
    return [];
  }

  private async readNewNow(count: number): Promise<GroupEntry[]> {
    const out: GroupEntry[] = [];
    const first = this.next;
    this.next = (first + 1) % this.count;
    for (let i = 0; i < this.count && out.length < count; i++) {
      out.push(...(await (this.groups[(first + i) % this.count] as RedisEventGroup).readNewNow(count - out.length)));
    }
    return out.sort((a, b) => compareEventIds(a.id, b.id));
  }

  /** One connection per partition for blocking reads, each following its slot (a Cluster of its own). */
  private partitionWake(): PartitionWake {
    this.wake ??= new PartitionWake({
      keys: this.keys,
      open: () => {
        const cluster = this.cluster.duplicate([], {
          lazyConnect: false,
          redisOptions: { maxRetriesPerRequest: 0, commandTimeout: this.commandTimeoutMs + WAKE_BLOCK_MS },
        });
        cluster.on("error", (err: Error) => this.logger?.debug({ err: err.message }, "archive redis cluster connection error"));
        return cluster;
      },
      within: (pending) => pending,
      logger: this.logger,
    });
    return this.wake;
  }

  async claimIdle(minIdleMs: number, count: number, start: string): Promise<ClaimResult> {
    const colon = start.indexOf(":");
    let partition = colon < 0 ? 0 : Number(start.slice(0, colon));
    let from = colon < 0 ? "0-0" : start.slice(colon + 1);
    const entries: GroupEntry[] = [];
    let trimmed = 0;
    while (partition < this.count && entries.length < count) {
      const claim = await (this.groups[partition] as RedisEventGroup).claimIdle(minIdleMs, count - entries.length, from);
      entries.push(...claim.entries);
      trimmed += claim.trimmed;
      if (claim.next !== "0-0") return { entries, next: `${partition}:${claim.next}`, trimmed };
      partition += 1;
      from = "0-0";
    }
    return { entries, next: partition >= this.count ? "0-0" : `${partition}:${from}`, trimmed };
  }

  async ack(ids: readonly string[]): Promise<void> {
    const byPartition = new Map<number, string[]>();
    for (const id of ids) {
      const p = Number(id.slice(id.indexOf("-") + 1)) % this.count;
      byPartition.set(p, [...(byPartition.get(p) ?? []), id]);
    }
    await Promise.all([...byPartition].map(([p, list]) => (this.groups[p] as RedisEventGroup).ack(list)));
  }

  async stats(): Promise<GroupStats | undefined> {
    const all = await Promise.all(this.groups.map((g) => g.stats()));
    let out: { pending: number; undelivered: number; lastDelivered: string; trimmedUndelivered: number } | undefined;
    for (const s of all) {
      if (s === undefined) continue;
      out ??= { pending: 0, undelivered: 0, lastDelivered: "0-0", trimmedUndelivered: 0 };
      out.pending += s.pending;
      out.undelivered += s.undelivered;
      out.trimmedUndelivered += s.trimmedUndelivered;
      if (compareEventIds(s.lastDelivered, out.lastDelivered) > 0) out.lastDelivered = s.lastDelivered;
    }
    return out;
  }

  async reapConsumers(idleMs: number): Promise<number> {
    let removed = 0;
    for (const group of this.groups) removed += await group.reapConsumers(idleMs);
    return removed;
  }

  close(): void {
    this.closed = true;
    this.wake?.close();
    this.cluster.disconnect();
  }
}
