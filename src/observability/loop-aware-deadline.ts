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
 *
 * Every Redis command has one of these, so they share one timer: a deadline
 * is an entry in a list, looked at when the timer fires, and the timer is set
 * for the earliest look any entry needs. Starting and cancelling one costs no
 * timer of its own (a timer is set or cleared only when the earliest look
 * moves earlier, or the last deadline goes).
 *
 * The list is linked through its entries (yallist), not a Set: young
 * collections keep every entry a long-lived Set with an entry per call ever
 * held (through the tables V8 leaves linked as it rebuilds the Set, as far as
 * we can tell), so each call's whole graph (the entry's callback reaches its
 * request) was promoted to the old generation (README, "Garbage the service
 * makes"). An entry taken out of the list holds no link to the others.
 */
import { performance } from "node:perf_hooks";
import { Node, Yallist } from "yallist";
import { BUSY_CEILING_FACTOR, unqueuedSince, waitClock, waitedSince, type WaitClock } from "./loop-idle.js";

/** Shortest wait between two looks, so a mostly busy loop is not polled in a tight cycle. */
const MIN_RECHECK_MS = 10;

export interface Deadline {
  /** Stops it; the callback will not run. Idempotent. */
  cancel(): void;
}

class Entry implements Deadline {
  readonly start: WaitClock = waitClock();
  readonly startedAt = performance.now();
  /** performance.now() at or after which the entry is looked at next. */
  lookAt: number;
  cancelled = false;
  /** The entry's place in `entries` while it is there. */
  readonly node: Node<Entry> = new Node<Entry>(this);

  constructor(
    readonly timeoutMs: number,
    readonly onExpired: () => void,
  ) {
    this.lookAt = this.startedAt + timeoutMs;
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.node.list === entries) {
      entries.removeNode(this.node);
      if (entries.length === 0) disarm();
    }
  }
}

/** Deadlines not yet expired or cancelled, oldest first. */
const entries = new Yallist<Entry>();
let timer: NodeJS.Timeout | undefined;
/** performance.now() the timer is set for. */
let armedAt = Number.POSITIVE_INFINITY;

function arm(at: number): void {
  if (timer !== undefined) clearTimeout(timer);
  armedAt = at;
  timer = setTimeout(fire, Math.max(0, at - performance.now()));
}

function disarm(): void {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
  armedAt = Number.POSITIVE_INFINITY;
}

/** Looks at every entry that is due: expires it, or sets its next look. Then sets the timer for the earliest look left. */
function fire(): void {
  timer = undefined;
  armedAt = Number.POSITIVE_INFINITY;
  const now = performance.now();
  let earliest = Number.POSITIVE_INFINITY;
  for (let node = entries.head, next = node?.next; node !== undefined; node = next, next = node?.next) {
    const entry = node.value;
    // A timer can fire a little early by the clock performance.now() reads.
    if (entry.lookAt <= now + 1) {
      const idle = waitedSince(entry.start);
      const ran = unqueuedSince(entry.start);
      if (idle >= entry.timeoutMs || ran >= entry.timeoutMs * BUSY_CEILING_FACTOR) {
        entries.removeNode(node);
        // One poll phase first: an answer already in the socket is read before the wait is given up.
        setImmediate(expire, entry);
        continue;
      }
      entry.lookAt = now + Math.max(MIN_RECHECK_MS, Math.min(entry.timeoutMs - idle, entry.timeoutMs * BUSY_CEILING_FACTOR - ran));
    }
    if (entry.lookAt < earliest) earliest = entry.lookAt;
  }
  if (earliest !== Number.POSITIVE_INFINITY) arm(earliest);
}

function expire(entry: Entry): void {
  if (entry.cancelled) return;
  entry.cancelled = true;
  entry.onExpired();
}

/** Calls `onExpired` once `timeoutMs` of waiting for I/O (or BUSY_CEILING_FACTOR × timeoutMs of unqueued wall time) has passed. */
export function loopAwareDeadline(timeoutMs: number, onExpired: () => void): Deadline {
  const entry = new Entry(timeoutMs, onExpired);
  entries.pushNode(entry.node);
  if (entry.lookAt < armedAt) arm(entry.lookAt);
  return entry;
}

/** Deadlines pending now (for tests: cancelled and expired ones are gone). */
export function pendingDeadlines(): number {
  return entries.length;
}

/**
 * `pending`, or the rejection `onExpired()` returns once the loop-aware
 * deadline passes first. The work behind `pending` may still settle later;
 * nobody waits for it then.
 */
export function withinDeadline<T>(pending: Promise<T>, timeoutMs: number, onExpired: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const deadline = loopAwareDeadline(timeoutMs, () => reject(onExpired()));
    pending.then(
      (value) => {
        deadline.cancel();
        resolve(value);
      },
      (error: unknown) => {
        deadline.cancel();
        reject(error);
      },
    );
  });
}
