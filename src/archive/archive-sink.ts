/**
 * The archive sink: reads the event log through a Redis consumer group and
 * writes every ended session (closed, expired, closed by close_oldest) to the
 * archive database, then acknowledges the entries.
 *
 * Delivery is at-least-once and the write idempotent (ON CONFLICT DO NOTHING
 * on (tenant, session_id)), so no ended session is lost or doubled by:
 * - a crash between the write and the XACK: the entries stay pending and are
 *   read again, by this consumer (readPending at start) or by another replica
 *   (XAUTOCLAIM once idle for claimIdleMs);
 * - the database being down: the batch in hand is retried with backoff and
 *   nothing more is read, so the backlog waits in the event log (bounded by its
 *   retention) and the service keeps serving sessions;
 * - Redis reconnecting or losing its data: reads are retried, and a missing
 *   group is created again.
 * One batch (batchSize entries) is the most this process holds in memory.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { isSessionError } from "../domain/errors.js";
import { eventIdTime } from "../store/event-id.js";
import type { ArchiveRow } from "./pg-archive.js";
import { describe, isUnavailable } from "./pg-archive.js";
import type { ClaimResult, GroupEntry, GroupStats } from "./redis-event-group.js";
import { isMissingGroup } from "./redis-event-group.js";

/** What the sink needs of the event log (RedisEventGroup). */
export interface EventGroupPort {
  ensureGroup(): Promise<void>;
  readPending(count: number): Promise<GroupEntry[]>;
  readNew(count: number, blockMs: number): Promise<GroupEntry[]>;
  claimIdle(minIdleMs: number, count: number, start: string): Promise<ClaimResult>;
  ack(ids: readonly string[]): Promise<void>;
  stats(): Promise<GroupStats | undefined>;
  reapConsumers(idleMs: number): Promise<number>;
  close(): void;
}

/** What the sink needs of the archive database (PgArchive). */
export interface ArchiveWriterPort {
  migrate(): Promise<void>;
  insert(rows: readonly ArchiveRow[]): Promise<number>;
  ping(): Promise<void>;
}

/** Told what the sink does, for metrics; must not throw. */
export interface ArchiveSinkObserver {
  /** Rows written (inserted: new; duplicates: already there), with each row's lag from its event to its write. */
  written(inserted: number, duplicates: number, lagsMs: readonly number[]): void;
  /** Entries that could not be archived: trimmed from the log first, malformed, or refused by the database. */
  lost(reason: "trimmed" | "malformed" | "rejected", count: number): void;
  /** Entries not yet archived (pending + undelivered), when known. */
  backlog(entries: number): void;
  databaseUp(up: boolean): void;
}

export type ArchiveSinkState = "starting" | "running" | "database_unreachable" | "redis_unreachable" | "stopped";

export interface ArchiveSinkOptions {
  readonly group: EventGroupPort;
  readonly archive: ArchiveWriterPort;
  /** Most entries read and written at once. */
  readonly batchSize: number;
  /** Entries pending this long with another consumer are taken over (it is presumed dead). */
  readonly claimIdleMs: number;
  /** Longest wait of one read for new entries (default 1000). */
  readonly blockMs?: number;
  readonly logger?: Logger;
  readonly observer?: ArchiveSinkObserver;
}

const MAX_BACKOFF_MS = 5000;
const STATS_INTERVAL_MS = 5000;
/** Consumers gone this long with nothing pending are removed from the group. */
const REAP_IDLE_MS = 3_600_000;
const REAP_INTERVAL_MS = 600_000;

export class ArchiveSink {
  private readonly group: EventGroupPort;
  private readonly archive: ArchiveWriterPort;
  private readonly batchSize: number;
  private readonly claimIdleMs: number;
  private readonly blockMs: number;
  private readonly logger: Logger | undefined;
  private readonly observer: ArchiveSinkObserver | undefined;
  private readonly stopped = new AbortController();
  private readonly listeners = new Set<(state: ArchiveSinkState) => void>();
  private loop: Promise<void> | undefined;
  private current: ArchiveSinkState = "starting";
  private dbUp: boolean | undefined;
  /** Trimmed-before-delivery entries already counted, at the group position they were counted at. */
  private trimmedReported: { at: string; count: number } | undefined;
  private statsDue = 0;
  /**
   * Whether the group may be behind the log (at start, after a failure, after a full batch): then the
   * entries trimmed before delivery are counted before the next read, which would skip past them.
   */
  private behind = true;
  private schemaDone: () => void = () => {};
  /** Resolves once the schema is migrated (never, if the sink is stopped first). */
  readonly schemaReady = new Promise<void>((resolve) => {
    this.schemaDone = resolve;
  });

  constructor(options: ArchiveSinkOptions) {
    this.group = options.group;
    this.archive = options.archive;
    this.batchSize = options.batchSize;
    this.claimIdleMs = options.claimIdleMs;
    this.blockMs = options.blockMs ?? 1000;
    this.logger = options.logger;
    this.observer = options.observer;
  }

  get state(): ArchiveSinkState {
    return this.current;
  }

  /** Calls the listener after each change of state; returns the function that removes it. */
  onState(listener: (state: ArchiveSinkState) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Starts in the background: the database and Redis may still be unreachable. */
  start(): void {
    this.loop ??= this.run();
  }

  /** Finishes the batch in hand (written and acknowledged, or left pending), then closes the Redis connection. */
  async stop(): Promise<void> {
    this.stopped.abort();
    await this.loop;
    this.group.close();
    this.setState("stopped");
  }

  private async run(): Promise<void> {
    await this.prepareSchema();
    let phase: "group" | "pending" | "live" = "group";
    let claimFrom = "0-0";
    let nextClaim = 0;
    let nextReap = Date.now() + REAP_INTERVAL_MS;
    let backoff = 0;
    while (!this.stopped.signal.aborted) {
      try {
        const now = Date.now();
        if (phase === "group") {
          await this.group.ensureGroup();
          phase = "pending";
          continue;
        }
        let entries: GroupEntry[];
        if (phase === "pending") {
          entries = await this.group.readPending(this.batchSize);
          if (entries.length === 0) phase = "live";
        } else if (now >= nextClaim) {
          const claim = await this.group.claimIdle(this.claimIdleMs, this.batchSize, claimFrom);
          if (claim.trimmed > 0) this.lost("trimmed", claim.trimmed);
          claimFrom = claim.next;
          // A full scan done: look again in half the idle time, so an orphan waits at most 1.5 x claimIdleMs.
          if (claimFrom === "0-0") nextClaim = now + Math.max(100, Math.floor(this.claimIdleMs / 2));
          entries = claim.entries;
        } else {
          if (this.behind) await this.refreshGroupStats();
          entries = await this.group.readNew(this.batchSize, Math.min(this.blockMs, Math.max(1, nextClaim - now)));
          this.behind = entries.length >= this.batchSize;
        }
        if (entries.length > 0) await this.deliver(entries);
        if (now >= this.statsDue) {
          await this.refreshGroupStats();
          await this.checkDatabase();
        }
        if (now >= nextReap) {
          nextReap = now + REAP_INTERVAL_MS;
          await this.group.reapConsumers(REAP_IDLE_MS);
        }
        backoff = 0;
        if (this.dbUp !== false) this.setState("running");
      } catch (error) {
        if (this.stopped.signal.aborted) break;
        this.behind = true;
        if (isMissingGroup(error)) {
          // Redis lost the log (restart without persistence, failover to an empty replica).
          this.logger?.warn("archive sink: the event log's consumer group is gone; creating it again");
          phase = "group";
        } else {
          // Entries read before the failure may be unacknowledged: read this consumer's pending list first.
          if (phase === "live") phase = "pending";
          this.logger?.warn({ err: errorText(error) }, "archive sink: event log read failed; retrying");
        }
        this.setState("redis_unreachable");
        backoff = Math.min(MAX_BACKOFF_MS, Math.max(100, backoff * 2));
        await this.pause(backoff);
      }
    }
  }

  /** Migrates the schema, retrying while the database is unreachable. */
  private async prepareSchema(): Promise<void> {
    let backoff = 100;
    while (!this.stopped.signal.aborted) {
      try {
        await this.archive.migrate();
        this.databaseUp(true);
        this.schemaDone();
        return;
      } catch (error) {
        this.databaseUp(false);
        this.logger?.warn({ err: errorText(error) }, "archive database migration failed; retrying");
        await this.pause(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }

  /** Writes the ended sessions among the entries, then acknowledges them all; on stop, leaves them pending. */
  private async deliver(entries: readonly GroupEntry[]): Promise<void> {
    const rows: ArchiveRow[] = [];
    for (const entry of entries) {
      if (entry.event === undefined) this.lost(entry.problem, 1);
      else if (entry.event.type === "closed" || entry.event.type === "expired") rows.push({ record: entry.event.session, eventId: entry.id });
    }
    if (!(await this.write(rows))) return;
    await this.group.ack(entries.map((e) => e.id));
  }

  /** True once the rows are in the database; false when stopped first. */
  private async write(rows: readonly ArchiveRow[]): Promise<boolean> {
    if (rows.length === 0) return true;
    let backoff = 100;
    while (!this.stopped.signal.aborted) {
      try {
        const inserted = await this.insertAll(rows);
        const now = Date.now();
        this.databaseUp(true);
        this.observer?.written(inserted, rows.length - inserted, rows.map((r) => Math.max(0, now - eventIdTime(r.eventId))));
        return true;
      } catch (error) {
        this.databaseUp(false);
        this.behind = true;
        this.logger?.warn({ err: errorText(error), rows: rows.length }, "archive database write failed; retrying the batch");
        if (Date.now() >= this.statsDue) await this.refreshGroupStats().catch(() => {});
        await this.pause(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
    return false;
  }

  /**
   * One statement for the batch. A statement the database refuses for what is
   * in it (a data or integrity error, SQLSTATE class 22 or 23) is retried row
   * by row, so one bad row is set aside (counted, logged without values)
   * instead of blocking the log. Any other failure is retried as it is: a row
   * is never dropped for a reason that may pass.
   */
  private async insertAll(rows: readonly ArchiveRow[]): Promise<number> {
    try {
      return await this.archive.insert(rows);
    } catch (error) {
      if (!refusedForContent(error)) throw error;
      if (rows.length === 1) {
        this.logger?.error({ err: errorText(error), eventId: rows[0]?.eventId }, "archive database refused an ended session; set aside");
        this.lost("rejected", 1);
        return 0;
      }
      let inserted = 0;
      for (const row of rows) inserted += await this.insertAll([row]);
      return inserted;
    }
  }

  /** Backlog and entries lost to trimming, from the group (also while a batch waits for the database). */
  private async refreshGroupStats(): Promise<void> {
    this.statsDue = Date.now() + STATS_INTERVAL_MS;
    const stats = await this.group.stats();
    if (stats !== undefined) {
      this.observer?.backlog(stats.pending + stats.undelivered);
      // Counted once per position: the count only grows until the group reads past the gap.
      const already = this.trimmedReported?.at === stats.lastDelivered ? this.trimmedReported.count : 0;
      if (stats.trimmedUndelivered > already) this.lost("trimmed", stats.trimmedUndelivered - already);
      this.trimmedReported = { at: stats.lastDelivered, count: Math.max(already, stats.trimmedUndelivered) };
    }
  }

  /** Between batches the database may go or come back: keeps the health detail true while idle. */
  private async checkDatabase(): Promise<void> {
    try {
      await this.archive.ping();
      this.databaseUp(true);
    } catch {
      this.databaseUp(false);
    }
  }


  private databaseUp(up: boolean): void {
    if (up !== this.dbUp) {
      if (up && this.dbUp === false) this.logger?.info("archive database reachable again");
      this.dbUp = up;
      this.observer?.databaseUp(up);
    }
    this.setState(up ? "running" : "database_unreachable");
  }

  private lost(reason: "trimmed" | "malformed" | "rejected", count: number): void {
    if (reason === "trimmed") {
      this.logger?.error({ count }, "archive sink: event log entries were trimmed before they were archived (the sink fell behind WATCH_RETENTION*)");
    } else if (reason === "malformed") {
      this.logger?.error({ count }, "archive sink: malformed event log entries skipped");
    }
    this.observer?.lost(reason, count);
  }

  private setState(state: ArchiveSinkState): void {
    if (state === this.current || this.current === "stopped") return;
    this.current = state;
    for (const listener of [...this.listeners]) listener(state);
  }

  private async pause(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.stopped.signal }).catch(() => {});
  }
}

function refusedForContent(error: unknown): boolean {
  if (isSessionError(error) || isUnavailable(error)) return false;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && (code.startsWith("22") || code.startsWith("23"));
}

/** The error's class and code, never its message's values. */
function errorText(error: unknown): string {
  if (isSessionError(error)) return error.message;
  return describe(error);
}
