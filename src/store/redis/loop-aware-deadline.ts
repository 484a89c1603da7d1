/**
 * The deadline of one Redis call, counted in time the service could have
 * read the reply: a busy process is not a down Redis.
 *
 * A wall-clock timer (ioredis's commandTimeout, a plain setTimeout) also
 * counts the time the reply sat in the socket while this process's event loop
 * ran other work or the machine gave its CPU to others; under load that
 * reported Redis as down while it answered in a millisecond. Node reports
 * how long the loop has been idle, waiting in its poll phase for I/O
 * (performance.eventLoopUtilization().idle): while it idles, nothing is
 * readable, so the reply has not come. The deadline therefore counts loop
 * idle time, and when it is reached it first lets one poll phase pass
 * (setImmediate), so a reply already in the socket is read before the call
 * is given up. A process that never idles still gives up after
 * CEILING_FACTOR times the timeout of wall time, so a Redis that hangs
 * while the process is saturated is reported too.
 */
import { performance } from "node:perf_hooks";

/** Wall-clock bound, as a multiple of the timeout, for a loop that never idles. */
export const CEILING_FACTOR = 5;
/** Shortest wait between two looks, so a mostly busy loop is not polled in a tight cycle. */
const MIN_RECHECK_MS = 10;

export interface Deadline {
  /** Stops it; the callback will not run. Idempotent. */
  cancel(): void;
}

/** Calls `onExpired` once `timeoutMs` of loop idle time (or CEILING_FACTOR × timeoutMs of wall time) has passed. */
export function loopAwareDeadline(timeoutMs: number, onExpired: () => void): Deadline {
  const idleAtStart = performance.eventLoopUtilization().idle;
  const startedAt = performance.now();
  let cancelled = false;
  let timer: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  const look = (): void => {
    timer = undefined;
    const idle = performance.eventLoopUtilization().idle - idleAtStart;
    const wall = performance.now() - startedAt;
    if (idle >= timeoutMs || wall >= timeoutMs * CEILING_FACTOR) {
      immediate = setImmediate(() => {
        if (!cancelled) onExpired();
      });
      return;
    }
    const left = Math.min(timeoutMs - idle, timeoutMs * CEILING_FACTOR - wall);
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
