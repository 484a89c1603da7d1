/**
 * ARCHIVE_DB_RETENTION: deletes archived sessions that ended longer ago than
 * the retention, in batches (each a short statement over the end_time index),
 * so a large backlog of old rows never holds locks or a transaction for long.
 * Every replica runs it; rows one replica is deleting are skipped by the others.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { describe } from "./pg-archive.js";

export interface RetentionPort {
  deleteEndedBefore(cutoff: number, limit: number): Promise<number>;
}

export interface ArchiveRetentionOptions {
  readonly archive: RetentionPort;
  readonly retentionMs: number;
  /** Rows per DELETE (default 1000). */
  readonly batchSize?: number;
  /** Time between purges (default 10 minutes). */
  readonly intervalMs?: number;
  readonly logger?: Logger;
  readonly onDeleted?: (rows: number) => void;
}

const DEFAULT_BATCH = 1000;
const DEFAULT_INTERVAL_MS = 600_000;
/** Pause between two batches, so a purge yields to the sink's writes. */
const BATCH_PAUSE_MS = 50;

export class ArchiveRetention {
  private readonly options: ArchiveRetentionOptions;
  private readonly stopped = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(options: ArchiveRetentionOptions) {
    this.options = options;
  }

  start(): void {
    this.loop ??= (async () => {
      const interval = this.options.intervalMs ?? DEFAULT_INTERVAL_MS;
      while (!this.stopped.signal.aborted) {
        try {
          await this.purge();
        } catch (error) {
          this.options.logger?.warn({ err: describe(error) }, "archive retention: purge failed; retrying at the next interval");
        }
        await sleep(interval, undefined, { signal: this.stopped.signal }).catch(() => {});
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    await this.loop;
  }

  /** Deletes every session that ended before now - retention, batch by batch; returns how many. */
  async purge(now = Date.now()): Promise<number> {
    const cutoff = now - this.options.retentionMs;
    const batch = this.options.batchSize ?? DEFAULT_BATCH;
    let total = 0;
    while (!this.stopped.signal.aborted) {
      const deleted = await this.options.archive.deleteEndedBefore(cutoff, batch);
      total += deleted;
      if (deleted > 0) this.options.onDeleted?.(deleted);
      if (deleted < batch) break;
      await sleep(BATCH_PAUSE_MS);
    }
    if (total > 0) this.options.logger?.info({ rows: total }, "archive retention: deleted sessions past ARCHIVE_DB_RETENTION");
    return total;
  }
}
