/**
 * Bounds how slowly a request may arrive, on HTTP/1 and HTTP/2 alike: the
 * whole request within `requestTimeoutMs`, and while its body is still
 * coming, at least `minBodyRate` bytes per second over each window of
 * RATE_WINDOW_MS. HTTP/1 counts the socket's bytes (the connection carries
 * one request at a time); HTTP/2 counts each stream's own DATA, so one
 * trickling stream cannot hide behind busy neighbours on its connection.
 * Both count the time this process waited for I/O (observability/loop-idle.ts),
 * so a busy server does not blame its callers.
 *
 * A request that falls behind loses its connection (HTTP/1: there is no
 * other way to stop a body mid-flight) or its stream: RST_STREAM
 * ENHANCE_YOUR_CALM, which gRPC clients report as RESOURCE_EXHAUSTED (the
 * gRPC HTTP/2 mapping). A reset rather than a status in trailers because the
 * handler that owns the response (connect's, or the fast gRPC path) is still
 * waiting for the body; a reset ends both sides at once and frees the
 * stream's slot and buffered bytes. A trickling client must not hold a
 * handler, a buffer and a slot for minutes.
 *
 * Streams whose request is complete (a watch, after its one message) are not
 * watched: they live as long as the caller wants, under the stream caps.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { BUSY_CEILING_FACTOR, waitClock, waitedSince, type WaitClock } from "../observability/loop-idle.js";

export type SlowReason = "request_timeout" | "slow_body";

export interface ArrivalLimits {
  readonly requestTimeoutMs: number;
  /** Bytes per second; 0 turns the rate check off. */
  readonly minBodyRate: number;
}

export interface RequestArrivalOptions extends ArrivalLimits {
  readonly onSlow: (reason: SlowReason, request: http.IncomingMessage | http2.Http2ServerRequest) => void;
}

/** One request as it arrives. */
export interface Arrival {
  /** Whether the whole request has arrived (whether or not its reader has read it yet). */
  complete(): boolean;
  /** Bytes received so far (a running count; only differences matter). */
  bytes(): number;
  /** Whether this process is holding the body back (its reader paused): such a window says nothing of the caller's pace. */
  held(): boolean;
}

export const RATE_WINDOW_MS = 2000;
/** The RST_STREAM code of a stream cut for arriving too slowly (gRPC clients: RESOURCE_EXHAUSTED). */
export const SLOW_STREAM_RST_CODE = http2.constants.NGHTTP2_ENHANCE_YOUR_CALM;

/** How often an ArrivalWatcher looks at its requests, per window. */
const LOOKS_PER_WINDOW = 4;

/** A request an ArrivalWatcher watches: stop() it once the request has arrived or ended. */
export interface WatchedArrival {
  stop(): void;
}

class Watched implements WatchedArrival {
  /** Set at the first look: a request that arrives before it costs no clock reading. */
  start: WaitClock | undefined = undefined;
  windowStart: WaitClock | undefined = undefined;
  windowStartedAt = 0;
  bytesAtWindowStart = 0;

  constructor(
    public arrival: Arrival | undefined,
    public cut: ((reason: SlowReason) => void) | undefined,
    readonly startedAt: number,
    private readonly watching: Set<Watched>,
  ) {}

  /**
   * Lets go of the request as well as leaving the set: a set's table may keep
   * a deleted entry until it is rebuilt, and a request held that long outlives
   * young-generation collections (its whole call is then promoted).
   */
  stop(): void {
    this.watching.delete(this);
    this.arrival = undefined;
    this.cut = undefined;
  }
}

/**
 * Watches the requests of a server with one timer: each is checked every
 * window (RATE_WINDOW_MS, or the whole timeout when shorter) until stop(),
 * and cut once, with the reason, when it falls behind. A timer and clock
 * readings per request would cost more than reading a small body, so a
 * request's wait clock starts at the first look after it was added (at most a
 * quarter window later: never cut sooner than its limits say); one that has
 * arrived by then costs a set entry. Holds one entry per request being read
 * (bounded by the connections and streams a server admits), and its timer
 * only while it has some.
 */
export class ArrivalWatcher {
  private readonly watching = new Set<Watched>();
  private timer: NodeJS.Timeout | undefined = undefined;
  /** The rate window, or the whole timeout when shorter. */
  private readonly windowMs: number;

  constructor(private readonly limits: ArrivalLimits) {
    this.windowMs = Math.min(RATE_WINDOW_MS, limits.requestTimeoutMs);
  }

  /** Watches `arrival` until stop(); calls `cut` once with the reason when it falls behind. */
  watch(arrival: Arrival, cut: (reason: SlowReason) => void): WatchedArrival {
    const watched = new Watched(arrival, cut, Date.now(), this.watching);
    this.watching.add(watched);
    // Left running while requests come and go; the first look that finds none stops it.
    if (this.timer === undefined) {
      this.timer = setInterval(this.look, this.windowMs / LOOKS_PER_WINDOW);
      this.timer.unref();
    }
    return watched;
  }

  /** Requests being watched (tests). */
  get size(): number {
    return this.watching.size;
  }

  private readonly look = (): void => {
    if (this.watching.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const now = Date.now();
    for (const watched of this.watching) {
      const { arrival, cut } = watched;
      if (arrival === undefined || cut === undefined) continue;
      const reason = this.judge(watched, arrival, now);
      if (reason === "arrived") {
        watched.stop();
      } else if (reason !== undefined) {
        watched.stop();
        cut(reason);
      }
    }
  };

  private judge(watched: Watched, arrival: Arrival, now: number): SlowReason | "arrived" | undefined {
    const limits = this.limits;
    if (arrival.complete()) return "arrived";
    if (watched.start === undefined) {
      watched.start = waitClock();
      watched.windowStart = watched.start;
      watched.windowStartedAt = now;
      watched.bytesAtWindowStart = arrival.bytes();
      return undefined;
    }
    // Time spent waiting for I/O, not wall time: bytes that sat unread while this process was busy are not the caller's delay.
    if (waitedSince(watched.start) >= limits.requestTimeoutMs || now - watched.startedAt >= limits.requestTimeoutMs * BUSY_CEILING_FACTOR) return "request_timeout";
    if (limits.minBodyRate > 0 && now - watched.windowStartedAt >= this.windowMs) {
      const bytes = arrival.bytes();
      // A window in which the process mostly worked, or held the body back, says nothing about the caller's pace.
      const judged = watched.windowStart !== undefined && waitedSince(watched.windowStart) >= RATE_WINDOW_MS / 2 && !arrival.held();
      if (judged && bytes - watched.bytesAtWindowStart < (limits.minBodyRate * RATE_WINDOW_MS) / 1000) return "slow_body";
      watched.bytesAtWindowStart = bytes;
      watched.windowStart = waitClock();
      watched.windowStartedAt = now;
    }
    return undefined;
  }
}

/** Resets an HTTP/2 stream that arrived too slowly (see SLOW_STREAM_RST_CODE). */
export function resetSlowStream(stream: http2.Http2Stream): void {
  if (!stream.destroyed && !stream.closed) stream.close(SLOW_STREAM_RST_CODE);
}

/**
 * Counts the DATA bytes an HTTP/2 stream receives, without taking them from
 * its reader. A "data" listener takes part in the stream's flowing mode, so
 * the reader must be listening first: Node's compatibility request starts
 * its own "data" listener on the stream at its first _read(), which read(0)
 * triggers (a read that consumes nothing).
 */
function countStreamBytes(req: http2.Http2ServerRequest): Arrival {
  let received = 0;
  req.read(0);
  req.stream.on("data", (chunk: Buffer) => {
    received += chunk.length;
  });
  return { complete: () => req.complete || streamArrived(req.stream), bytes: () => received, held: () => req.stream.isPaused() };
}

/** The peer has ended its side of the stream (END_STREAM): nothing more will arrive. */
export function streamArrived(stream: http2.Http2Stream): boolean {
  return stream.destroyed || stream.state.remoteClose === 1;
}

/** One watcher per server (its options): its requests share one timer. */
const watchers = new WeakMap<ArrivalLimits, ArrivalWatcher>();

function watcherFor(limits: ArrivalLimits): ArrivalWatcher {
  let watcher = watchers.get(limits);
  if (watcher === undefined) {
    watcher = new ArrivalWatcher(limits);
    watchers.set(limits, watcher);
  }
  return watcher;
}

/** Starts watching one request until it has fully arrived or its response is closed. */
export function watchRequestArrival(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  options: RequestArrivalOptions,
): void {
  if (req.complete) return;
  const arrival: Arrival =
    req instanceof http2.Http2ServerRequest
      ? countStreamBytes(req)
      : { complete: () => req.complete, bytes: () => req.socket.bytesRead, held: () => false };
  const watched = watcherFor(options).watch(arrival, (reason) => {
    done();
    options.onSlow(reason, req);
    if (req instanceof http2.Http2ServerRequest) resetSlowStream(req.stream);
    else req.socket.destroy();
  });
  const done = (): void => {
    watched.stop();
    req.off("end", done);
    res.off("close", done);
  };
  req.once("end", done);
  res.once("close", done);
}
