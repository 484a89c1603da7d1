/**
 * What one caller can hold at the connection level, whatever it sends:
 *
 * - Connections: at most `maxConnections` open on the process and
 *   `maxConnectionsPerAddress` from one remote IP. A connection over the
 *   per-address cap is closed at accept, before a byte is read, so refusing
 *   costs almost nothing and the file descriptors of a flood stay bounded.
 *   At the total cap, a new connection takes the place of the longest-idle one
 *   (an HTTP/2 connection with no open stream, or one that has not yet said
 *   which protocol it speaks), so idle connections held by a flood cannot lock
 *   out probes and callers; only when none is idle is the newcomer refused.
 * - HTTP/2 idle connections: a session with no open stream for `idleTimeoutMs`
 *   gets GOAWAY and closes (closeGracefully; a client that still wants it reconnects).
 * - HTTP/2 keep-alive: a session with open streams is pinged every
 *   `keepaliveIntervalMs`; one whose ping is not answered within
 *   `keepaliveTimeoutMs` (of loop idle time, see observability/loop-idle.ts) is destroyed, so streams of a vanished peer (a
 *   watch whose client lost power) do not hold memory until TCP notices.
 *
 * One timer sweeps every session, rather than a timer per session.
 */
import type { EventEmitter } from "node:events";
import { constants as http2constants } from "node:http2";
import type * as http2 from "node:http2";
import type * as net from "node:net";
import { BUSY_CEILING_FACTOR, waitClock, waitedSince, type WaitClock } from "../observability/loop-idle.js";

export interface ConnectionLimitsOptions {
  readonly maxConnections: number;
  readonly maxConnectionsPerAddress: number;
  readonly idleTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
  /** A connection was refused or closed by a limit; `reason` is one of ours. */
  readonly onLimit: (reason: ConnectionLimitReason, peer: string) => void;
}

export type ConnectionLimitReason = "max_connections" | "max_connections_per_address" | "evicted_idle" | "http2_idle" | "http2_keepalive_timeout";

interface SessionState {
  openStreams: number;
  /** When the last stream closed (or the session opened). */
  quietSince: number;
  /** When the last ping answer came (or the session opened). */
  lastPong: number;
  /** When the ping waiting for its answer was sent. */
  pingSentAt: number | undefined;
  /** The wait clocks then (loop-idle.ts). */
  pingClock: WaitClock | undefined;
  /** Idle close under way. */
  closing: boolean;
}

/** Stream id that tells the client "no stream of yours is refused yet" in a first GOAWAY (2^31 - 1). */
const MAX_STREAM_ID = 2 ** 31 - 1;
/** How long a graceful close waits for the ping round trip before closing anyway. */
const GOAWAY_ROUND_TRIP_MS = 1000;

/**
 * Closes a session the way RFC 9113 §6.8 describes for a graceful shutdown:
 * a first GOAWAY with the largest stream id tells the client to open no more
 * streams here, while a request it sent at that moment is still served; after
 * one round trip (a PING) close() sends the final GOAWAY and ends the session
 * once its streams finish. A single GOAWAY would refuse (REFUSED_STREAM) a
 * request that crossed it on the wire.
 */
export function closeGracefully(session: http2.ServerHttp2Session): void {
  if (session.closed || session.destroyed) return;
  session.goaway(http2constants.NGHTTP2_NO_ERROR, MAX_STREAM_ID);
  const timer = setTimeout(() => session.close(), GOAWAY_ROUND_TRIP_MS);
  timer.unref();
  const sent = session.ping(() => {
    clearTimeout(timer);
    session.close();
  });
  if (!sent) {
    clearTimeout(timer);
    session.close();
  }
}

export class ConnectionLimits {
  private total = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly sessions = new Map<http2.ServerHttp2Session, SessionState>();
  /** Connections that hold nothing but a file descriptor, oldest first, with how to close each. */
  private readonly idle = new Map<object, () => void>();
  /** Connections whose close already removes them from `idle`. */
  private readonly forgetOnClose = new WeakSet<EventEmitter>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly options: ConnectionLimitsOptions) {}

  /** Open connections counted now. */
  get connections(): number {
    return this.total;
  }

  /**
   * Counts a new connection, or refuses it (returns false; the caller
   * destroys the socket). A counted one is uncounted when it closes.
   */
  admit(socket: net.Socket): boolean {
    const address = socket.remoteAddress ?? "";
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= this.options.maxConnectionsPerAddress) {
      this.options.onLimit("max_connections_per_address", address);
      return false;
    }
    if (this.total >= this.options.maxConnections && !this.evictIdle()) {
      this.options.onLimit("max_connections", address);
      return false;
    }
    this.total += 1;
    this.perAddress.set(address, fromAddress + 1);
    socket.once("close", () => {
      this.total -= 1;
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, left);
    });
    return true;
  }

  /** Marks a connection as holding nothing (evictable at the total cap) until busy() or its close. */
  markIdle(connection: EventEmitter, evict: () => void): void {
    this.idle.delete(connection);
    this.idle.set(connection, evict);
    if (!this.forgetOnClose.has(connection)) {
      this.forgetOnClose.add(connection);
      connection.once("close", () => this.idle.delete(connection));
    }
  }

  busy(connection: object): void {
    this.idle.delete(connection);
  }

  /** Closes the longest-idle connection to make room; false when none is idle. */
  private evictIdle(): boolean {
    const first = this.idle.entries().next();
    if (first.done === true) return false;
    const [connection, evict] = first.value;
    this.idle.delete(connection);
    this.options.onLimit("evicted_idle", "");
    evict();
    return true;
  }

  /** Follows an HTTP/2 session for the idle and keep-alive rules until it closes. */
  watchSession(session: http2.ServerHttp2Session): void {
    const now = Date.now();
    const state: SessionState = { openStreams: 0, quietSince: now, lastPong: now, pingSentAt: undefined, pingClock: undefined, closing: false };
    this.sessions.set(session, state);
    const evict = (): void => {
      state.closing = true;
      session.close();
    };
    this.markIdle(session, evict);
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      state.openStreams += 1;
      this.busy(session);
      stream.once("close", () => {
        state.openStreams -= 1;
        if (state.openStreams === 0) {
          state.quietSince = Date.now();
          if (!state.closing) this.markIdle(session, evict);
        }
      });
    });
    session.once("close", () => {
      this.sessions.delete(session);
      this.busy(session);
    });
    this.startSweeper();
  }

  /** Stops the sweep (the server is closing; its drain takes over). */
  stop(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private startSweeper(): void {
    if (this.sweeper !== undefined) return;
    const { idleTimeoutMs, keepaliveIntervalMs, keepaliveTimeoutMs } = this.options;
    // A quarter of the shortest period: a rule fires at most a quarter late.
    const every = Math.max(25, Math.min(5000, Math.floor(Math.min(idleTimeoutMs, keepaliveIntervalMs, keepaliveTimeoutMs) / 4)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    const { idleTimeoutMs, keepaliveIntervalMs, keepaliveTimeoutMs } = this.options;
    for (const [session, state] of this.sessions) {
      if (session.closed || session.destroyed) continue;
      if (state.openStreams === 0) {
        state.pingSentAt = undefined;
        if (now - state.quietSince >= idleTimeoutMs && !state.closing) {
          state.closing = true;
          this.options.onLimit("http2_idle", session.socket?.remoteAddress ?? "");
          closeGracefully(session);
        }
        continue;
      }
      if (state.pingSentAt !== undefined && state.pingClock !== undefined) {
        // Counted in time spent waiting for I/O: an answer that sat unread while this process was busy is not a dead peer.
        const waited = waitedSince(state.pingClock);
        if (waited >= keepaliveTimeoutMs || now - state.pingSentAt >= keepaliveTimeoutMs * BUSY_CEILING_FACTOR) {
          this.options.onLimit("http2_keepalive_timeout", session.socket?.remoteAddress ?? "");
          session.destroy();
        }
        continue;
      }
      if (now - state.lastPong >= keepaliveIntervalMs) {
        const sentAt = now;
        const sent = session.ping((error) => {
          if (error !== null || state.pingSentAt !== sentAt) return;
          state.pingSentAt = undefined;
          state.lastPong = Date.now();
        });
        if (sent) {
          state.pingSentAt = sentAt;
          state.pingClock = waitClock();
        }
      }
    }
    if (this.sessions.size === 0) this.stop();
  }
}
