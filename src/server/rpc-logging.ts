/**
 * Server interceptor that writes exactly one log line per RPC:
 * `{ method, sessionId?, code, durationMs, requestId, traceId? }`, at info for "ok", warn for
 * failures the caller caused (not_found, invalid_argument, ...) and error for
 * failures of the service itself (internal, unavailable, ...). Streaming calls
 * log once, when the stream ends.
 *
 * It never logs request or response messages, headers or metadata: session
 * metadata and data values are the caller's secrets. The only fields read from
 * messages are the session id (from the request, or from the response's
 * session for CreateSession). For failures of the service it adds what went
 * wrong (see describeFault), without request values.
 *
 * The same outcome feeds the RPC metrics (count and latency by method and
 * code), so the log and the metrics can never disagree about a call.
 *
 * Correlation: the trace id of a valid W3C `traceparent` header, and a request
 * id (the caller's `x-request-id`, or a generated one) that is echoed in the
 * `x-request-id` response header, success or failure.
 */
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import { observeRpc } from "../observability/metrics.js";
import { REQUEST_ID_HEADER, requestIdOf, TRACEPARENT_HEADER, traceIdOf } from "../observability/trace-context.js";
import { isSessionError } from "../domain/errors.js";

/** Codes that mean the service failed, rather than the request being wrong. */
const SERVER_FAULTS: ReadonlySet<Code> = new Set([Code.Unknown, Code.Internal, Code.Unavailable, Code.DataLoss]);

/** "ok", or the gRPC code name in snake case as on the wire of the Connect protocol ("not_found"). */
export function codeName(code: Code | undefined): string {
  if (code === undefined) return "ok";
  const name = Code[code];
  return name.replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

interface RpcOutcome {
  readonly service: string;
  readonly methodName: string;
  readonly method: string;
  readonly requestId: string;
  /** From a valid traceparent header. */
  readonly traceId: string | undefined;
  readonly sessionId: string | undefined;
  readonly startedAt: number;
  /** Absent for success. */
  readonly error?: unknown;
  /** A stream the client left before it ended. */
  readonly cancelled?: boolean;
}

export interface RpcLoggingOptions {
  /**
   * The server's shutdown signal. Streams ended by a shutdown fail with
   * UNAVAILABLE so that clients reconnect elsewhere; that is expected on every
   * deploy, so it is logged at warn rather than error.
   */
  readonly shutdownSignal?: AbortSignal;
}

export function createRpcLoggingInterceptor(logger: Logger, options: RpcLoggingOptions = {}): Interceptor {
  const log = (outcome: RpcOutcome): void => logRpc(logger, outcome, options.shutdownSignal?.aborted === true);
  return (next) => async (req) => {
    const startedAt = performance.now();
    const service = req.method.parent.typeName;
    const methodName = req.method.name;
    const rpc = {
      service,
      methodName,
      method: `${service}/${methodName}`,
      requestId: requestIdOf(req.header.get(REQUEST_ID_HEADER)),
      traceId: traceIdOf(req.header.get(TRACEPARENT_HEADER)),
      startedAt,
    };
    const requestSessionId = req.stream ? undefined : sessionIdOf(req.message);
    let res;
    try {
      res = await next(req);
    } catch (error) {
      // A ConnectError's metadata goes out as response headers (or trailers); anything else connect replaces with its own error.
      if (error instanceof ConnectError) error.metadata.set(REQUEST_ID_HEADER, rpc.requestId);
      log({ ...rpc, sessionId: requestSessionId, error });
      throw error;
    }
    res.header.set(REQUEST_ID_HEADER, rpc.requestId);
    if (!res.stream) {
      log({ ...rpc, sessionId: requestSessionId ?? sessionIdOf(res.message) });
      return res;
    }
    const logged: StreamResponse = {
      ...res,
      message: logWhenDone(res.message, (error, cancelled) => log({ ...rpc, sessionId: requestSessionId, error, cancelled })),
    };
    return logged;
  };
}

/** Passes messages through and calls `done` once when the stream ends, fails, or is abandoned. */
async function* logWhenDone<T>(messages: AsyncIterable<T>, done: (error: unknown, cancelled: boolean) => void): AsyncGenerator<T> {
  let ended = false;
  let error: unknown = undefined;
  try {
    yield* messages;
    ended = true;
  } catch (e) {
    error = e;
    ended = true;
    throw e;
  } finally {
    done(error, !ended);
  }
}

function logRpc(logger: Logger, outcome: RpcOutcome, shuttingDown: boolean): void {
  const elapsedMs = performance.now() - outcome.startedAt;
  const durationMs = Math.round(elapsedMs * 1000) / 1000;
  const code =
    outcome.cancelled === true ? codeName(Code.Canceled) : outcome.error === undefined ? codeName(undefined) : codeName(ConnectError.from(outcome.error).code);
  observeRpc(outcome.service, outcome.methodName, code, elapsedMs / 1000);
  const base = { method: outcome.method, sessionId: outcome.sessionId, durationMs, requestId: outcome.requestId, traceId: outcome.traceId };
  if (outcome.cancelled === true || outcome.error === undefined) {
    logger.info({ ...base, code }, "rpc");
    return;
  }
  const error = ConnectError.from(outcome.error);
  if (!SERVER_FAULTS.has(error.code)) {
    logger.warn({ ...base, code }, "rpc");
    return;
  }
  if (shuttingDown && error.code === Code.Unavailable) {
    logger.warn({ ...base, code, shuttingDown }, "rpc");
    return;
  }
  logger.error({ ...base, code, error: describeFault(outcome.error, error) }, "rpc");
}

interface FaultDescription {
  readonly type: string;
  readonly message?: string;
  readonly stack?: string;
}

/**
 * What went wrong, for the operator. Messages of our own errors (ConnectError,
 * SessionError) are written to name fields and ids, never values, so they are
 * logged. A foreign error's message may quote input (JSON.parse does), so only
 * its class and stack frames are.
 */
function describeFault(thrown: unknown, error: ConnectError): FaultDescription {
  const origin = error.cause ?? thrown;
  if (origin instanceof ConnectError) return { type: "ConnectError", message: origin.rawMessage };
  if (isSessionError(origin)) return { type: origin.name, message: origin.message };
  if (origin instanceof Error) return { type: origin.constructor.name, stack: stackFrames(origin) };
  return { type: typeof origin };
}

/** The stack without its first line, which repeats the message. */
function stackFrames(error: Error): string | undefined {
  return error.stack
    ?.split("\n")
    .filter((line) => line.trimStart().startsWith("at "))
    .join("\n");
}

/** Session ids are UUIDs; a longer value is not one, and must not make log lines unbounded. */
const MAX_LOGGED_SESSION_ID_LENGTH = 64;

/** The session an RPC is about: the message's `sessionId`, or its `session`'s (CreateSession's response). */
function sessionIdOf(message: object): string | undefined {
  const fields = message as Readonly<Record<string, unknown>>;
  const session = fields["session"];
  const id =
    fields["sessionId"] ?? (typeof session === "object" && session !== null ? (session as Readonly<Record<string, unknown>>)["sessionId"] : undefined);
  if (typeof id !== "string" || id === "") return undefined;
  return id.slice(0, MAX_LOGGED_SESSION_ID_LENGTH);
}
