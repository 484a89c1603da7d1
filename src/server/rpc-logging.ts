/**
 * The observing server interceptor: for every RPC, whatever the protocol or
 * serving path, one log line, the standard gRPC server metrics and one
 * OpenTelemetry server span, all from the same outcome (see rpc-outcome), so
 * the log, the metrics and the trace can never disagree about a call.
 *
 * The log line: `{ method, sessionId?, code, durationMs, requestId, traceId?,
 * spanId? }`, at info for "ok", warn for failures the caller caused
 * (not_found, invalid_argument, ...), error for failures of the service itself
 * (internal, unavailable, ...), and debug for a call the client ended itself
 * (cancelled, or a stream that ran out its deadline): those are routine, and
 * a reflection client such as grpcurl cancels every stream it opens.
 * Streaming calls log once, when the stream ends.
 *
 * It never logs request or response messages, headers or metadata: session
 * metadata and data values are the caller's secrets. The only fields read from
 * messages are the session id (from the request, or from the response's
 * session for CreateSession). For failures of the service it adds what went
 * wrong (see describeFault), without request values.
 *
 * Metrics (go-grpc-prometheus names and labels): started, handled (by code),
 * handling seconds, messages received and sent, and the in-flight gauge.
 *
 * Correlation: the span continues the caller's W3C trace context
 * (traceparent); with tracing off, the log line still carries the trace id of
 * a valid traceparent. A request id (the caller's `x-request-id`, or a
 * generated one) is echoed in the `x-request-id` response header, success or
 * failure. Both ids go into the call's context values (RPC_IDS) for the audit
 * records.
 *
 * Streams also get their response head sent at once (FLUSH_RESPONSE_HEADERS),
 * so a client sees a watch open before its first message.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { isSpanContextValid, SpanStatusCode, type Context, type Span } from "@opentelemetry/api";
import type { ServerHttp2Stream } from "node:http2";
import type { Logger } from "pino";
import { COUNT_MESSAGE_SENT, rpcHandled, rpcMessageReceived, rpcMessageSent, rpcStarted, type GrpcType, type RpcLabels } from "../observability/metrics.js";
import { atDeadline, grpcCodeName, outcomeCode, requestTimeoutMs, snakeCodeName } from "../observability/rpc-outcome.js";
import { REQUEST_ID_HEADER, requestIdOf, RPC_IDS, TRACEPARENT_HEADER, traceIdOf, type RpcIds } from "../observability/trace-context.js";
import { startRpcSpan, tracingRegistered, withContext } from "../observability/tracing.js";
import { isSessionError } from "../domain/errors.js";
import { plainRecord } from "../logging/plain-records.js";
import { CALL_ABORT, type AbortState } from "./call-abort.js";
import { FLUSH_RESPONSE_HEADERS } from "./early-headers.js";
import { HTTP2_STREAM } from "./http2-stream.js";

/** Codes that mean the service failed, rather than the request being wrong. */
const SERVER_FAULTS: ReadonlySet<Code> = new Set([Code.Unknown, Code.Internal, Code.Unavailable, Code.DataLoss]);


/** grpc_type of a method, as go-grpc-prometheus names it. */
export function grpcTypeOf(method: DescMethod): GrpcType {
  switch (method.methodKind) {
    case "unary":
      return "unary";
    case "server_streaming":
      return "server_stream";
    case "client_streaming":
      return "client_stream";
    default:
      return "bidi_stream";
  }
}

/** The metric labels of a method. */
export function rpcLabelsOf(method: DescMethod): RpcLabels {
  return { grpc_type: grpcTypeOf(method), grpc_service: method.parent.typeName, grpc_method: method.name };
}

/** What every call of one method shares: its labels, its name, its sent-message counter. */
interface MethodFacts {
  readonly labels: RpcLabels;
  /** "package.Service/Method" */
  readonly name: string;
  readonly countSent: () => void;
}

/** Per method descriptor (a fixed set), so a call allocates none of it. */
const methodFacts = new WeakMap<DescMethod, MethodFacts>();

function factsOf(method: DescMethod): MethodFacts {
  let facts = methodFacts.get(method);
  if (facts === undefined) {
    const labels = rpcLabelsOf(method);
    facts = { labels, name: `${labels.grpc_service}/${labels.grpc_method}`, countSent: () => rpcMessageSent(labels) };
    methodFacts.set(method, facts);
  }
  return facts;
}

interface Call {
  readonly labels: RpcLabels;
  readonly method: string;
  readonly ids: RpcIds;
  readonly span: Span;
  /** The call's abort state (its signal, unless the path keeps the state without one: call-abort.ts). */
  readonly signal: AbortState;
  readonly startedAt: number;
  /** The caller's deadline (ms from the start), if it set one. */
  readonly timeoutMs: number | undefined;
  /** The call's HTTP/2 stream (to tell a client's reset from a normal end). */
  readonly stream: ServerHttp2Stream | undefined;
}

export interface RpcLoggingOptions {
  /**
   * Whether the server is shutting down. Streams ended by a shutdown fail with
   * UNAVAILABLE so that clients reconnect elsewhere; that is expected on every
   * deploy, so it is logged at info rather than error.
   */
  readonly shuttingDown?: () => boolean;
}

export function createRpcLoggingInterceptor(logger: Logger, options: RpcLoggingOptions = {}): Interceptor {
  const shuttingDown = (): boolean => options.shuttingDown?.() === true;
  return (next) => async (req) => {
    const startedAt = performance.now();
    const facts = factsOf(req.method);
    const labels = facts.labels;
    const { span, context } = startRpcSpan(labels.grpc_service, labels.grpc_method, req.header);
    const spanContext = span.spanContext();
    // Without a tracer provider every span context is the invalid one: no need to check it.
    const traced = tracingRegistered() && isSpanContextValid(spanContext);
    const traceId = traced ? spanContext.traceId : traceIdOf(req.header.get(TRACEPARENT_HEADER));
    // One shape for every call (absent ids left undefined: not logged, not audited).
    const ids: RpcIds = { requestId: requestIdOf(req.header.get(REQUEST_ID_HEADER)), traceId, spanId: traced ? spanContext.spanId : undefined };
    req.contextValues.set(RPC_IDS, ids);
    req.contextValues.set(COUNT_MESSAGE_SENT, facts.countSent);
    if (ids.traceId !== undefined) span.setAttribute("sessiond.request_id", ids.requestId);
    const call: Call = {
      labels,
      method: facts.name,
      ids,
      span,
      signal: req.contextValues.get(CALL_ABORT) ?? req.signal,
      startedAt,
      timeoutMs: requestTimeoutMs(req.header),
      stream: req.contextValues.get(HTTP2_STREAM),
    };
    // Each call ends exactly once (end): here when it fails or answers one message, else when its response stream ends.

    rpcStarted(labels);
    const requestSessionId = req.stream ? undefined : sessionIdOf(req.message);
    if (!req.stream) rpcMessageReceived(labels);
    const observed = req.stream ? { ...req, message: countEach(req.message, () => rpcMessageReceived(labels)) } : req;
    let res;
    try {
      // Without tracing there is no context to enter: no closure per call for it.
      res = await (tracingRegistered() ? withContext(context, () => next(observed)) : next(observed));
    } catch (error) {
      // A ConnectError's metadata goes out as response headers (or trailers); anything else connect replaces with its own error.
      if (error instanceof ConnectError) error.metadata.set(REQUEST_ID_HEADER, ids.requestId);
      end(logger, call, requestSessionId, error, false, shuttingDown());
      throw error;
    }
    res.header.set(REQUEST_ID_HEADER, ids.requestId);
    if (!res.stream) {
      rpcMessageSent(labels);
      end(logger, call, requestSessionId ?? sessionIdOf(res.message), undefined, false, shuttingDown());
      return res;
    }
    req.contextValues.get(FLUSH_RESPONSE_HEADERS)?.(res.header);
    const observedResponse: StreamResponse = {
      ...res,
      // The outcome a moment later: a client's RST_STREAM ends the request body before it aborts the call's signal (stream "close").
      message: observeStream(res.message, context, () => rpcMessageSent(labels), (error, abandoned) =>
        setImmediate(() => end(logger, call, requestSessionId, error, abandoned, shuttingDown())),
      ),
    };
    return observedResponse;
  };
}

/** Passes messages through, calling `each` per message. */
async function* countEach<T>(messages: AsyncIterable<T>, each: () => void): AsyncGenerator<T> {
  for await (const message of messages) {
    each();
    yield message;
  }
}

/**
 * Passes messages through (pulling each one inside the call's trace context,
 * so the store calls a stream makes are children of its span), counts them,
 * and calls `done` once when the stream ends, fails, or is abandoned.
 */
async function* observeStream<T>(
  messages: AsyncIterable<T>,
  context: Context,
  each: () => void,
  done: (error: unknown, abandoned: boolean) => void,
): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  let ended = false;
  let error: unknown = undefined;
  try {
    for (;;) {
      const step = await withContext(context, () => iterator.next());
      if (step.done === true) break;
      each();
      yield step.value;
    }
    ended = true;
  } catch (e) {
    error = e;
    ended = true;
    throw e;
  } finally {
    if (!ended) await iterator.return?.();
    done(error, !ended);
  }
}

/** `error` what the call threw, if anything; `abandoned` its response stream's consumer left before it ended. */
function end(logger: Logger, call: Call, sessionId: string | undefined, error: unknown, abandoned: boolean, shuttingDown: boolean): void {
  const elapsedMs = performance.now() - call.startedAt;
  const code = outcomeCode({
    signal: call.signal,
    error,
    abandoned,
    // NGHTTP2_NO_ERROR (0) is a normal close; anything else from the client is it leaving.
    clientReset: !shuttingDown && call.stream?.rstCode !== undefined && call.stream.rstCode !== 0,
    deadlinePassed: atDeadline(elapsedMs, call.timeoutMs),
  });
  rpcHandled(call.labels, grpcCodeName(code), elapsedMs / 1000);

  call.span.setAttribute("rpc.grpc.status_code", code ?? 0);
  if (code !== undefined && SERVER_FAULTS.has(code)) call.span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
  call.span.end();

  const durationMs = Math.round(elapsedMs * 1000) / 1000;
  const line = {
    method: call.method,
    sessionId,
    durationMs,
    requestId: call.ids.requestId,
    traceId: call.ids.traceId,
    spanId: call.ids.spanId,
    code: snakeCodeName(code),
  };
  if (code === undefined) {
    plainRecord(logger, "info", line, "rpc");
    return;
  }
  // The client ended it: cancelled, or its deadline passed while the call ran (a stream's routine end; a unary call's is worth a look).
  if (code === Code.Canceled || (code === Code.DeadlineExceeded && call.labels.grpc_type !== "unary")) {
    plainRecord(logger, "debug", line, "rpc");
    return;
  }
  if (!SERVER_FAULTS.has(code)) {
    plainRecord(logger, "warn", line, "rpc");
    return;
  }
  if (shuttingDown && code === Code.Unavailable) {
    logger.info({ ...line, shuttingDown }, "rpc");
    return;
  }
  logger.error({ ...line, error: describeFault(error, ConnectError.from(error)) }, "rpc");
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
