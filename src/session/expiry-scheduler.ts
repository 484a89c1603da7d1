/**
 * Expires sessions on time: sleeps until the earliest due time in the store's
 * due queue (never longer than maxSleepMs), then has the store expire what is
 * due (store.expireDue archives each session exactly once, even when several
 * processes call it at the same moment, and logs one EXPIRED event for it).
 *
 * It wakes earlier when some process's write gives a session an expire time
 * before the earliest the last look found (store.waitDue: with Redis, a
 * blocking read of the due queue's wake-ups, which only such a write appends
 * to), so it reads nothing per create or extend. No other signal is needed:
 * the due queue is the source of truth and the sleep is bounded by
 * maxSleepMs, so a wake-up that is late or missed (a reconnecting read)
 * delays an expiry by at most that; and nothing is lost while this process
 * (or every process) was down: the first look at the queue after a start
 * finds everything that came due meanwhile.
 *
 * Who is told of an expiry: SessionStore.onExpired listeners, for this
 * process's expiries whether the scheduler or a call performed them.
 *
 * Sleeps are computed from the store's clock (nextDue returns it), so a
 * process whose clock is off does not expire late.
 */
import type { Logger } from "pino";
import type { SessionStore } from "../store/store.js";

export interface ExpirySchedulerOptions {
  readonly store: Pick<SessionStore, "expireDue" | "nextDue" | "waitDue">;
  /**
   * Whether a sleep ends early for a session due before it (store.waitDue).
   * Default true; of a host's workers one does (cluster/worker.ts), and the
   * others look at the queue every maxSleepMs.
   */
  readonly wakesEarly?: boolean;
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
  private wake: (() => void) | undefined;

  constructor(private readonly options: ExpirySchedulerOptions) {}

  /** Starts the loop, which looks at the due queue at once. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.loop = this.run();
  }

  /** Stops the loop and waits for a store call in progress. */
  async stop(): Promise<void> {
    this.started = false;
    this.wake?.();
    await this.loop;
    this.loop = undefined;
  }

  private async run(): Promise<void> {
    const { store, batchSize, logger, maxSleepMs } = this.options;
    let idleLooks = 0;
    let failures = 0;
    while (this.started) {
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
          if (idleLooks > 1) await this.sleep(MIN_PAUSE_MS);
          continue;
        }
        failures = 0;
        idleLooks = 0;
        const delay = dueAt === undefined ? maxSleepMs : Math.min(maxSleepMs, dueAt - now);
        await this.sleep(delay);
      } catch (error) {
        failures += 1;
        // Name and kind only: a store error message could in principle quote stored values.
        if (failures === 1) {
          logger.warn({ errName: error instanceof Error ? error.name : typeof error, errKind: kindOf(error) }, "expiry scheduler: store call failed; retrying");
        }
        await this.sleep(Math.min(maxSleepMs, 100 * failures), false);
      }
    }
  }

  /**
   * Sleeps delayMs, unless stopped or (early) a write brings a session due
   * sooner: one made since the last look ends the wait at once (waitDue).
   */
  private sleep(delayMs: number, early = this.options.wakesEarly ?? true): Promise<void> {
    if (!this.started) return Promise.resolve();
    const delay = Math.max(0, delayMs);
    return new Promise<void>((resolve) => {
      const abort = new AbortController();
      const done = (): void => {
        clearTimeout(timer);
        abort.abort();
        if (this.wake === done) this.wake = undefined;
        resolve();
      };
      // unref: the scheduler alone never keeps the process alive.
      const timer = setTimeout(done, delay);
      timer.unref();
      this.wake = done;
      if (early && delay > 0) {
        this.options.store.waitDue(Date.now() + delay, abort.signal).then(
          (woken) => {
            if (woken) done();
          },
          // A failed wait leaves the timer, as a missed wake-up would.
          () => undefined,
        );
      }
    });
  }
}

function kindOf(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "kind" in error && typeof error.kind === "string") return error.kind;
  return undefined;
}
