/**
 * The client other backend services import to talk to sessiond:
 *
 * ```ts
 * import { createSessionClient, AccessLevel } from "@sessiond/client";
 *
 * const sessions = createSessionClient("http://sessiond:8080");
 * const { session } = await sessions.createSession({ userId: "alice", dataSource: "warehouse", accessLevel: AccessLevel.WRITE });
 * ```
 *
 * It speaks gRPC over HTTP/2 by default (one multiplexed connection, the same
 * protocol grpcurl and other gRPC clients use), and puts a deadline on every
 * unary call so that a caller never waits forever on an unreachable service.
 * Streams (WatchSessions) get no deadline unless the call passes one: a watch
 * is meant to stay open, and a default deadline would end every watch after
 * a few seconds with DEADLINE_EXCEEDED. A lost connection surfaces as UNKNOWN
 * (the call may have been applied), never as ABORTED; every CreateSession
 * carries a request_id (see call-safety.ts).
 */
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "./gen/session/v1/session_pb.js";
import { DEFAULT_TIMEOUT_MS } from "./defaults.js";
import { honestOutcomes, idempotentCreate } from "./call-safety.js";
import { cancelledOnExit } from "./stream-cancel.js";

export * from "./gen/session/v1/session_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
export type { CallOptions, Client, Interceptor } from "@connectrpc/connect";
export { watchSessions, WatchOutOfRangeError, type WatchHelperOptions, type WatchRequest, type WatchSessionsSource } from "./watch.js";
export { createWatchReader, type WatchCallOptions, type WatchReader, type WatchReaderOptions, type WatchSessionsCaller } from "./watch-reader.js";
export { WATCH_CURSOR_METADATA } from "./watch-protocol.js";
export { DEFAULT_TIMEOUT_MS } from "./defaults.js";
export {
  isAborted,
  isDeadlineExceeded,
  isFailedPrecondition,
  isInvalidArgument,
  isNotFound,
  isOutOfRange,
  isPermissionDenied,
  isResourceExhausted,
  isUnauthenticated,
  isUnavailable,
  statusCode,
  statusMessage,
  watchCursorOf,
} from "./errors.js";


export interface SessionClientOptions {
  /** Deadline of each unary call that does not pass its own `timeoutMs`. Default 5 s. Streams get none unless they pass one. */
  readonly timeoutMs?: number;
  /** Client interceptors, e.g. to add headers. */
  readonly interceptors?: readonly Interceptor[];
  /** "grpc" (default) or "connect"; both over HTTP/2. */
  readonly protocol?: "grpc" | "connect";
}

export type SessionClient = Client<typeof SessionService>;

/** A client for the SessionService at baseUrl, e.g. "http://127.0.0.1:8080". */
export function createSessionClient(baseUrl: string, options: SessionClientOptions = {}): SessionClient {
  const client = createClient(SessionService, createSessionTransport(baseUrl, options));
  // timeoutMs 0 is connect's "no deadline"; a caller's own timeoutMs still wins. Leaving the loop cancels the stream.
  return {
    ...client,
    watchSessions: (request, callOptions) =>
      cancelledOnExit((signal) => client.watchSessions(request, { ...callOptions, signal, timeoutMs: callOptions?.timeoutMs ?? 0 }), callOptions?.signal),
  };
}

/** The transport behind createSessionClient, for callers that build clients themselves. */
export function createSessionTransport(baseUrl: string, options: SessionClientOptions = {}): Transport {
  const common = {
    baseUrl,
    defaultTimeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    // Outermost first: idempotentCreate retries around honestOutcomes' classification.
    interceptors: [idempotentCreate, honestOutcomes, ...(options.interceptors ?? [])],
  };
  if (options.protocol === "connect") {
    return createConnectTransport({ ...common, httpVersion: "2", useBinaryFormat: true });
  }
  return createGrpcTransport(common);
}
