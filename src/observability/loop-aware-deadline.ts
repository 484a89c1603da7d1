/**
 * A deadline that judges a peer (a Redis reply, a health ping, a request
 * body), counted in time this process could have spent waiting for it: a
 * busy process is not a down peer.
 *
 * A wall-clock timer (ioredis's commandTimeout, a plain setTimeout) also
 * counts the time the peer's bytes sat in the socket while this process's
 * event loop ran other work or the machine gave its CPU to others; under load
 * that reported Redis as down while it answered in a millisecond. While the
 * process waits for I/O (loop-idle.ts), nothing is readable, so the peer has
 * not answered: the deadline counts that time, and when it is reached it
 * first lets one poll phase pass (setImmediate), so an answer already in the
 * socket is read before the wait is given up. A process that never idles
 * still gives up after BUSY_CEILING_FACTOR times the timeout of wall time
 * less the time it sat in a run queue (unqueuedSince), so a peer that hangs
 * while the process is saturated with its own work is reported too, but a
 * machine loaded many times over its cores does not make every wait that long.
 *
 * A caller's own deadline (grpc-timeout) is not one of these: it is wall
 * time by definition, and stays a plain timer.
 */
import { BUSY_CEILING_FACTOR, unqueuedSince, waitClock, waitedSince } from "./loop-idle.js";

/** Shortest wait between two looks, so a mostly busy loop is not polled in a tight cycle. */
const MIN_RECHECK_MS = 10;

export interface Deadline {
  /** Stops it; the callback will not run. Idempotent. */
  cancel(): void;
}

/** Calls `onExpired` once `timeoutMs` of waiting for I/O (or BUSY_CEILING_FACTOR × timeoutMs of unqueued wall time) has passed. */
export function loopAwareDeadline(timeoutMs: number, onExpired: () => void): Deadline {
  const start = waitClock();
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const look = (): void => {
    timer = undefined;
    const idle = waitedSince(start);
    const ran = unqueuedSince(start);
    if (idle >= timeoutMs || ran >= timeoutMs * BUSY_CEILING_FACTOR) {
      immediate = setImmediate(() => {
        if (!cancelled) onExpired();
      });
      return;
    }
    const left = Math.min(timeoutMs - idle, timeoutMs * BUSY_CEILING_FACTOR - ran);
    timer = setTimeout(look, Math.max(MIN_RECHECK_MS, left));
  };
  timer = setTimeout(look, timeoutMs);
  return {
    cancel(): void {
      cancelled = true;
      if (timer !== undefined) clearTimeout(timer);
      if (immediate !== undefined) clearImmediate(immediate);
    },
  };
}

/**
 * `pending`, or the rejection `onExpired()` returns once the loop-aware
 * deadline passes first. The work behind `pending` may still settle later;
 * nobody waits for it then.
 */
export function withinDeadline<T>(pending: Promise<T>, timeoutMs: number, onExpired: () => Error): Promise<T> {
  pending.catch(() => {});
  let deadline: Deadline | undefined;
  const expired = new Promise<never>((_, reject) => {
    deadline = loopAwareDeadline(timeoutMs, () => reject(onExpired()));
  });
  return Promise.race([pending, expired]).finally(() => deadline?.cancel());
}
