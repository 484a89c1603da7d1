/**
 * How long this process's event loop has waited idle for I/O, in
 * milliseconds since the process started (Node's eventLoopUtilization).
 * Deadlines that judge a peer (a Redis reply, a ping answer, a request
 * body's pace) count this rather than wall time: while the loop idles,
 * nothing from the peer is waiting to be read, so the wait is the peer's;
 * while the loop is busy, bytes the peer sent can sit unread, and that wait
 * is ours. Such deadlines keep a wall-clock ceiling for a loop that never
 * idles.
 */
import { performance } from "node:perf_hooks";

export function loopIdleMs(): number {
  return performance.eventLoopUtilization().idle;
}

/** Wall-clock ceiling of a loop-idle deadline, as a multiple of its timeout. */
export const BUSY_CEILING_FACTOR = 5;
