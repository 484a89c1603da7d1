/**
 * Bounds how slowly a request may arrive, on HTTP/1 and HTTP/2 alike: the
 * whole request within `requestTimeoutMs`, and while its body is still
 * coming, at least `minBodyRate` bytes per second over each window of
 * RATE_WINDOW_MS (HTTP/1: the connection carries one request at a time, so
 * the socket's byte count is the body's). Both count the loop's idle time
 * (observability/loop-idle.ts), so a busy server does not blame its callers. A request that falls behind loses
 * its connection (HTTP/1) or its stream (HTTP/2, RST_STREAM CANCEL): a client
 * that trickles bytes must not hold a handler, a buffer and a slot for minutes.
 *
 * Streams whose request is complete (a watch, after its one message) are not
 * watched: they live as long as the caller wants, under the stream caps.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { BUSY_CEILING_FACTOR, loopIdleMs } from "../observability/loop-idle.js";

export interface RequestArrivalOptions {
  readonly requestTimeoutMs: number;
  /** Bytes per second; 0 turns the rate check off. */
  readonly minBodyRate: number;
  readonly onSlow: (reason: "request_timeout" | "slow_body", request: http.IncomingMessage | http2.Http2ServerRequest) => void;
}

export const RATE_WINDOW_MS = 2000;

/** Starts watching one request until it has fully arrived or its response is closed. */
export function watchRequestArrival(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  options: RequestArrivalOptions,
): void {
  if (req.complete) return;
  const startedAt = Date.now();
  const idleAtStart = loopIdleMs();
  const socket = req instanceof http2.Http2ServerRequest ? undefined : req.socket;
  let bytesAtWindowStart = socket?.bytesRead ?? 0;
  let idleAtWindowStart = idleAtStart;
  const rateCheck = options.minBodyRate > 0 && socket !== undefined;
  const tick = Math.min(RATE_WINDOW_MS, options.requestTimeoutMs);
  const timer = setInterval(() => {
    if (req.complete) return done();
    // Loop idle time, not wall time: bytes that sat unread while this process was busy are not the caller's delay.
    const idle = loopIdleMs();
    if (idle - idleAtStart >= options.requestTimeoutMs || Date.now() - startedAt >= options.requestTimeoutMs * BUSY_CEILING_FACTOR) return cut("request_timeout");
    if (rateCheck) {
      const bytes = socket.bytesRead;
      // A window in which the loop was mostly busy says nothing about the caller's pace.
      if (idle - idleAtWindowStart >= RATE_WINDOW_MS / 2 && bytes - bytesAtWindowStart < (options.minBodyRate * RATE_WINDOW_MS) / 1000) return cut("slow_body");
      bytesAtWindowStart = bytes;
      idleAtWindowStart = idle;
    }
  }, tick);
  timer.unref();
  const done = (): void => {
    clearInterval(timer);
    req.off("end", done);
    res.off("close", done);
  };
  const cut = (reason: "request_timeout" | "slow_body"): void => {
    done();
    options.onSlow(reason, req);
    if (req instanceof http2.Http2ServerRequest) req.stream.close(http2.constants.NGHTTP2_CANCEL);
    else req.socket.destroy();
  };
  req.once("end", done);
  res.once("close", done);
}
