/**
 * Periodically archives sessions whose expire_time has passed.
 *
 * Redis key expiry is not used to detect expiry: its events arrive late and can
 * be lost (see the field notes). Instead every process calls store.expireDue on
 * a timer; the store archives each due session exactly once even when several
 * processes sweep at the same time, and returns the records it archived so the
 * caller can announce them.
 */
import type { Logger } from "pino";
import type { SessionRecord } from "./model.js";
import type { SessionStore } from "../store/store.js";

export interface ExpirySweeperOptions {
  readonly store: Pick<SessionStore, "expireDue">;
  /** Pause between the end of one sweep and the start of the next. */
  readonly intervalMs: number;
  /** Most sessions archived by one store call; a full batch is followed by another at once. */
  readonly batchSize: number;
  /** Called with every non-empty batch the store archived. */
  readonly onExpired: (records: readonly SessionRecord[]) => void;
  readonly logger: Logger;
}

export class ExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private started = false;

  constructor(private readonly options: ExpirySweeperOptions) {}

  /**
   * Starts sweeping: once right away (sessions may have come due while no
   * process was running), then every intervalMs. Calling it again while
   * started does nothing.
   */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.schedule(0);
  }

  /** Stops the timer and waits for a sweep in progress to finish. */
  async stop(): Promise<void> {
    this.started = false;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    await this.running;
  }

  /**
   * Chained timeouts instead of setInterval: the next sweep is scheduled only
   * after this one finished, so a slow store never gets overlapping sweeps.
   * unref() so the sweeper alone never keeps the process alive.
   */
  private schedule(delayMs = this.options.intervalMs): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Chained on the previous run: a stop() and start() while a sweep is in
      // progress must not start a second, overlapping one.
      const run: Promise<void> = (this.running ?? Promise.resolve())
        .then(() => this.sweep())
        .finally(() => {
          if (this.running !== run) return;
          this.running = undefined;
          if (this.started && this.timer === undefined) this.schedule();
        });
      this.running = run;
    }, delayMs);
    this.timer.unref();
  }

  /** Expires batches until one comes back short. Store errors are logged, never thrown: the next tick retries. */
  private async sweep(): Promise<void> {
    const { store, batchSize, onExpired, logger } = this.options;
    let expired = 0;
    try {
      while (this.started) {
        const batch = await store.expireDue(batchSize);
        expired += batch.length;
        if (batch.length > 0) onExpired(batch);
        if (batch.length < batchSize) break;
      }
    } catch (error) {
      // Name and kind only: a store error message could in principle quote stored values.
      logger.warn({ errName: error instanceof Error ? error.name : typeof error, errKind: kindOf(error) }, "expiry sweep failed; retrying next interval");
    }
    if (expired > 0) logger.debug({ expired }, "expired due sessions");
  }
}

function kindOf(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "kind" in error && typeof error.kind === "string") return error.kind;
  return undefined;
}
