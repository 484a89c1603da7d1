/**
 * How long this process has waited for I/O, for deadlines that judge a peer
 * (a Redis reply, a ping answer, a request body's pace): while the process
 * waits, nothing from the peer is waiting to be read, so the wait is the
 * peer's; while it works, or waits for a CPU the machine gives to others,
 * bytes the peer sent can sit unread, and that wait is ours. Such deadlines
 * keep a wall-clock ceiling for a process that never waits.
 *
 * The measure is the event loop's idle time (Node's eventLoopUtilization:
 * time in the poll phase), less, where Linux reports it, the time the main
 * thread was not waiting at all: on a CPU, or runnable and queued for one
 * (/proc/thread-self/schedstat). ELU alone counts a wake-up that sits in the
 * run queue of a loaded machine as idle, and on a machine loaded many times
 * over its cores those wake-ups add up to whole timeouts.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { performance } from "node:perf_hooks";

const timing = performance.nodeTiming;

/** The loop's idle time, as eventLoopUtilization() reports it, read without the object that builds. */
export function loopIdleMs(): number {
  return timing.loopStart > 0 ? timing.idleTime : 0;
}

/** Ceiling of a loop-idle deadline (in wall time, or in unqueuedSince() time), as a multiple of its timeout. */
export const BUSY_CEILING_FACTOR = 5;

/** A reading of the clocks waitedSince() compares. */
export interface WaitClock {
  /** Loop idle ms (loopIdleMs). */
  readonly idle: number;
  /** Ms the main thread spent blocked (neither on a CPU nor queued for one), up to the reading; undefined where unknown. */
  readonly blocked: number | undefined;
  /** Ms the main thread spent queued for a CPU, up to the reading; undefined where unknown. */
  readonly queued: number | undefined;
  /** performance.now() at the reading. */
  readonly at: number;
}

/** How long a reading of the thread's blocked time is reused: starting or checking a wait need not cost a read each. */
const BLOCKED_SAMPLE_MS = 50;
type Sample = { readonly at: number } & (SchedTimes | { readonly blocked: undefined; readonly queued: undefined });
let sample: Sample | undefined;

/** The latest reading, refreshed when older than BLOCKED_SAMPLE_MS. */
function blockedSample(now: number): Sample {
  if (sample === undefined || now - sample.at > BLOCKED_SAMPLE_MS) sample = { at: now, ...(schedTimes(now) ?? { blocked: undefined, queued: undefined }) };
  return sample;
}

/**
 * The clocks now, for a wait that starts. A reading of the blocked time up to
 * BLOCKED_SAMPLE_MS old is taken as if the thread had been blocked ever
 * since, and waitedSince() takes its reading as it was: either way the wait
 * can only come out shorter (a deadline later, never earlier).
 */
export function waitClock(): WaitClock {
  const now = performance.now();
  const { at, blocked, queued } = blockedSample(now);
  return { idle: loopIdleMs(), blocked: blocked === undefined ? undefined : blocked + (now - at), queued, at: now };
}

/**
 * Ms this process has waited for I/O since `from`: the loop's idle time,
 * bounded by the time the main thread was blocked where that is known.
 */
export function waitedSince(from: WaitClock): number {
  const idle = loopIdleMs() - from.idle;
  const { blocked } = blockedSample(performance.now());
  if (from.blocked === undefined || blocked === undefined) return idle;
  return Math.max(0, Math.min(idle, blocked - from.blocked));
}

/**
 * Ms of wall time since `from` less the time the main thread sat in a run
 * queue meanwhile (where Linux reports it; else wall time): the measure of a
 * busy ceiling. A process that works through its own backlog reaches it; one
 * that a loaded machine keeps waiting for a CPU is not made to give up on a
 * peer for the machine's load. A reading up to BLOCKED_SAMPLE_MS old can only
 * count less queueing, so the ceiling comes no later than that much early.
 */
export function unqueuedSince(from: WaitClock): number {
  const now = performance.now();
  const { queued } = blockedSample(now);
  const wall = now - from.at;
  if (from.queued === undefined || queued === undefined) return wall;
  return Math.max(0, wall - Math.max(0, queued - from.queued));
}

/** The main thread's scheduler statistics (Linux), kept open: one pread per reading. */
let schedstat: number | undefined | null;
const buffer = Buffer.alloc(96);

interface SchedTimes {
  /** Ms of wall time the main thread spent neither running nor runnable, up to the reading, from a fixed origin. */
  readonly blocked: number;
  /** Ms the main thread spent runnable in a run queue, from the thread's start. */
  readonly queued: number;
}

/** The main thread's times up to `now` (performance.now()); undefined where the kernel does not report them. schedstat holds ns on a CPU, ns waiting in a run queue. */
function schedTimes(now: number): SchedTimes | undefined {
  if (schedstat === null) return undefined;
  try {
    schedstat ??= openSync("/proc/thread-self/schedstat", "r");
    const read = readSync(schedstat, buffer, 0, buffer.length, 0);
    const [running, queued] = buffer.toString("latin1", 0, read).split(" ").map(Number);
    if (running === undefined || queued === undefined || !Number.isFinite(running) || !Number.isFinite(queued)) throw new Error("unexpected schedstat");
    return { blocked: now - (running + queued) / 1e6, queued: queued / 1e6 };
  } catch {
    if (typeof schedstat === "number") closeSync(schedstat);
    schedstat = null;
    return undefined;
  }
}
