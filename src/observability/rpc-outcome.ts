/**
 * The status an RPC really ended with, for the log line, the metrics, the
 * span and the audit record alike (one rule, one place).
 *
 * A stream can end "normally" from the handler's point of view while the
 * client had already gone: the client cancelled (HTTP/2 RST_STREAM CANCEL,
 * grpcurl does it after reflection answers), or its deadline passed. connect
 * aborts the call's signal with that reason (Canceled, DeadlineExceeded); a
 * handler that then fails on the dead stream reports some "internal" or
 * "unknown" error that is not the truth either. Both become the client's code.
 */
import { Code, ConnectError } from "@connectrpc/connect";

export interface Ending {
  /** What the call threw, if anything. */
  readonly error?: unknown;
  /** The response stream was abandoned by its consumer before it ended (the client left). */
  readonly abandoned?: boolean;
  /** The call's signal (HandlerContext.signal / request signal), or its abort state (what a signal says). */
  readonly signal: { readonly aborted: boolean; readonly reason: unknown };
  /** The client reset the call's HTTP/2 stream (RST_STREAM with an error code) before it ended. */
  readonly clientReset?: boolean;
  /** The call's deadline (grpc-timeout, connect-timeout-ms) had passed, or nearly, when it ended. */
  readonly deadlinePassed?: boolean;
}

/** The code the call ended with; undefined for OK. */
export function outcomeCode(ending: Ending): Code | undefined {
  const reason: unknown = ending.signal.aborted ? ending.signal.reason : undefined;
  const reasonCode = reason instanceof ConnectError ? reason.code : undefined;
  const clientLeft = ending.clientReset === true || reasonCode === Code.Canceled || reasonCode === Code.DeadlineExceeded;
  // A client whose deadline fires resets the stream itself (often before the server's own timer), with CANCEL or another code.
  const byClient = !clientLeft ? undefined : reasonCode === Code.DeadlineExceeded || ending.deadlinePassed === true ? Code.DeadlineExceeded : Code.Canceled;
  if (ending.error !== undefined) {
    const code = ConnectError.from(ending.error).code;
    if (byClient !== undefined && (code === Code.Unknown || code === Code.Internal || code === Code.Aborted || code === Code.Canceled)) return byClient;
    return code;
  }
  if (byClient !== undefined) return byClient;
  return ending.abandoned === true ? Code.Canceled : undefined;
}

/** "OK" or the code's name as grpc-go spells it ("NotFound"): the grpc_code label. */
export function grpcCodeName(code: Code | undefined): string {
  return code === undefined ? "OK" : Code[code];
}

/** "ok" or the code in snake case as the Connect protocol writes it ("not_found"): log lines and audit records. */
export function snakeCodeName(code: Code | undefined): string {
  if (code === undefined) return "ok";
  return Code[code].replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

/** Units of the gRPC timeout header ("300m": 300 ms), in milliseconds. */
const GRPC_TIMEOUT_UNITS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** The deadline the caller set, in ms from the request's arrival: gRPC / gRPC-Web `grpc-timeout` or Connect `connect-timeout-ms`. */
export function requestTimeoutMs(header: Headers): number | undefined {
  // Most calls send neither header: nothing to match then.
  const grpcHeader = header.get("grpc-timeout");
  const grpc = grpcHeader === null ? null : /^(\d{1,8})([HMSmun])$/.exec(grpcHeader);
  if (grpc !== null) return Number(grpc[1]) * (GRPC_TIMEOUT_UNITS[grpc[2] ?? "m"] ?? 1);
  const connectHeader = header.get("connect-timeout-ms");
  const connect = connectHeader === null ? null : /^\d{1,10}$/.exec(connectHeader);
  return connect === null ? undefined : Number(connect[0]);
}

/**
 * Whether a call `elapsedMs` into a `timeoutMs` deadline is at it. The
 * client's timer starts before the request reaches the server (connection
 * set-up, queueing) and fires first, so "at" allows slack: a quarter of the
 * timeout, at least 100 ms and at most 2 s. A cancel that close to the
 * deadline is reported as the deadline.
 */
export function atDeadline(elapsedMs: number, timeoutMs: number | undefined): boolean {
  if (timeoutMs === undefined || timeoutMs <= 0) return false;
  const slack = Math.min(2000, Math.max(100, timeoutMs / 4));
  return elapsedMs >= timeoutMs - slack;
}
