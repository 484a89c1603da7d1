/**
 * The archive sink's port to a partitioned event log (src/store/redis/keys.ts:
 * one log per partition, on a Redis Cluster): one consumer group per
 * partition's log, each a RedisEventGroup on a shared Cluster connection.
 * Each entry still goes to one consumer of its partition's group and stays
 * pending until acknowledged, so delivery across service replicas is what it
 * is on one log. A blocking read cannot span hash slots: new entries are read
 * from every partition without blocking, and an empty round waits
 * POLL_MS before the caller's next one.
 *
 * An event id names its partition (its sequence number modulo the partition
 * count, see emit in lua/prelude.ts), which routes acknowledgements. Claim
 * cursors are "<partition>:<id>", "0-0" for the start and the end of a scan.
 */
import { Cluster } from "ioredis";
import type { Logger } from "pino";
import { eventLogKey, Partitioning } from "../store/redis/keys.js";
import { clusterAuth, type RedisClusterTarget } from "../store/redis/connections.js";
import type { EventGroupPort } from "./archive-sink.js";
import { RedisEventGroup, type ClaimResult, type GroupEntry, type GroupStats, type RedisEventGroupOptions } from "./redis-event-group.js";
import { compareEventIds } from "../store/event-id.js";

/** Pause after a round that found nothing new in any partition. */
const POLL_MS = 25;

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

  constructor(options: PartitionedEventGroupOptions) {
    const partitions = new Partitioning(options.partitions);
    this.count = partitions.count;
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

  async readNew(count: number, blockMs: number): Promise<GroupEntry[]> {
    const out: GroupEntry[] = [];
    const first = this.next;
    this.next = (first + 1) % this.count;
    for (let i = 0; i < this.count && out.length < count; i++) {
      out.push(...(await (this.groups[(first + i) % this.count] as RedisEventGroup).readNewNow(count - out.length)));
    }
    if (out.length === 0) await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, Math.max(1, blockMs))));
    return out.sort((a, b) => compareEventIds(a.id, b.id));
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
    this.cluster.disconnect();
  }
}
