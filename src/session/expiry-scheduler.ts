/**
 * Expires sessions on time: sleeps until the earliest due time in the store's
 * due queue (never longer than maxSleepMs), then has the store expire what is
 * due (store.expireDue archives each session exactly once, even when several
 * processes call it at the same moment, and logs one EXPIRED event for it).
 *
 * It wakes earlier when the event log (read by this process's EventHub, so
 * with every process's writes) shows a live session due before the planned
 * wake-up, and hands that expire time to the store (noteDue), whose cached
 * view of the due queue may not have it yet. No other signal is needed: the
 * due queue is the source of truth and the sleep is bounded by maxSleepMs, so
 * an event that is late or missed (the reader reconnecting) delays an expiry
 * by at most that; and nothing is lost while this process (or every process)
 * was down: the first look at the queue after a start finds everything that
 * came due meanwhile.
 *
 * Who is told of an expiry: SessionStore.onExpired listeners, for this
 * process's expiries whether the scheduler or a call performed them.
 *
 * Sleeps are computed from the store's clock (nextDue returns it), so a
 * process whose clock is off does not expire late.
 */
import type { Logger } from "pino";
import type { EventHead, SessionStore } from "../store/store.js";

export interface ExpirySchedulerOptions {
  readonly store: Pick<SessionStore, "expireDue" | "nextDue" | "noteDue">;
  /** Where the scheduler hears of new and extended sessions (the process's EventHub). */
  readonly events?: { addListener(listener: (event: EventHead) => void): () => void };
  /** Longest sleep between two looks at the due queue. */
  readonly maxSleepMs: number;
  /** Most sessions archived by one store call; a full batch is followed by another at once. */
  readonly batchSize: number;
  readonly logger: Logger;
}

/** Shortest pause after a look that found nothing to do although the queue said so (stale queue scores). */
const MIN_PAUSE_MS = 2;

export class ExpiryScheduler {
  private started = false;
  private loop: Promise<void> | undefined;
  /** Store-clock time of the planned wake-up (Infinity while busy). */
  private wakeAt = Number.POSITIVE_INFINITY;
  private wake: (() => void) | undefined;
  private rearmed = false;
  /** Earliest expire time announced while the loop was busy (not asleep), store clock. */
  private earliestSeen = Number.POSITIVE_INFINITY;
  private removeListener: (() => void) | undefined;

  constructor(private readonly options: ExpirySchedulerOptions) {}

  /** Starts the loop, which looks at the due queue at once. */
  async start(): Promise<void> {
    if (this.started) return;
    const { store, events } = this.options;
    this.removeListener = events?.addListener((event) => {
      // The events that give a live session an expire time, or (updated: a new data source) a new due-queue entry.
      if (event.type !== "created" && event.type !== "extended" && event.type !== "updated") return;
      const at = event.expireTime;
      store.noteDue?.(event.sessionId, at);
      // Asleep: wake now if this one is due first. Busy: remember it for the next sleep.
      if (this.wake !== undefined) {
        if (at < this.wakeAt) this.rearm();
      } else if (at < this.earliestSeen) {
        this.earliestSeen = at;
      }
    });
    this.started = true;
    this.loop = this.run();
  }

  /** Stops the loop and waits for a store call in progress. */
  async stop(): Promise<void> {
    this.started = false;
    this.removeListener?.();
    this.removeListener = undefined;
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  /** Look at the due queue now (or right after the current look). */
  private rearm(): void {
    this.rearmed = true;
    this.wake?.();
  }

  private async run(): Promise<void> {
    const { store, batchSize, logger, maxSleepMs } = this.options;
    let idleLooks = 0;
    let failures = 0;
    while (this.started) {
      this.rearmed = false;
      this.wakeAt = Number.POSITIVE_INFINITY;
      this.earliestSeen = Number.POSITIVE_INFINITY;
      try {
        const { dueAt, now } = await store.nextDue();
        if (dueAt !== undefined && dueAt <= now) {
          const batch = await store.expireDue(batchSize);
          if (failures > 0) logger.info("expiry scheduler recovered");
          failures = 0;
          if (batch.length > 0) {
            idleLooks = 0;
            logger.debug({ expired: batch.length }, "expired due sessions");
            continue;
          }
          // The queue's scores are lower bounds; expireDue has just corrected them.
          idleLooks += 1;
          if (idleLooks > 1) await this.sleep(MIN_PAUSE_MS, now);
          continue;
        }
        failures = 0;
        idleLooks = 0;
        const delay = dueAt === undefined ? maxSleepMs : Math.min(maxSleepMs, dueAt - now);
        await this.sleep(delay, now);
      } catch (error) {
        failures += 1;
        // Name and kind only: a store error message could in principle quote stored values.
        if (failures === 1) {
          logger.warn({ errName: error instanceof Error ? error.name : typeof error, errKind: kindOf(error) }, "expiry scheduler: store call failed; retrying");
        }
        await this.sleep(Math.min(maxSleepMs, 100 * failures), Number.NEGATIVE_INFINITY);
      }
    }
  }

  /** Sleeps delayMs (storeNow: the store's clock, for comparing expire times), unless woken. */
  private sleep(delayMs: number, storeNow: number): Promise<void> {
    if (!this.started || this.rearmed) return Promise.resolve();
    // A session announced during the last look may be due before what the queue said then.
    if (this.earliestSeen - storeNow < delayMs) delayMs = Math.max(0, this.earliestSeen - storeNow);
    this.wakeAt = storeNow + delayMs;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      // unref: the scheduler alone never keeps the process alive.
      const timer = setTimeout(done, Math.max(0, delayMs));
      timer.unref();
      this.wake = done;
    });
  }
}

function kindOf(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "kind" in error && typeof error.kind === "string") return error.kind;
  return undefined;
}
