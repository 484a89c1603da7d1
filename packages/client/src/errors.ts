/**
 * Typed questions about a failed call, for errors from either client: a
 * ConnectError (createSessionClient, WatchReader) or a @grpc/grpc-js
 * ServiceError (the client from "@sessiond/client/grpc-js"). Both carry the
 * gRPC status code (the same numbers: Code.NotFound === grpc.status.NOT_FOUND),
 * so callers branch on what happened without knowing which client threw.
 *
 * ```ts
 * try { await sessions.getSession({ sessionId }); }
 * catch (e) { if (isNotFound(e)) return undefined; throw e; }
 * ```
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { WATCH_CURSOR_METADATA } from "./watch-protocol.js";

/** The shape of a grpc-js ServiceError that these helpers read (no grpc-js import needed). */
interface GrpcStatusError {
  readonly code: number;
  readonly details: string;
  readonly metadata: { get(key: string): unknown[] };
}

function isGrpcStatusError(error: unknown): error is GrpcStatusError {
  if (typeof error !== "object" || error === null) return false;
  const candidate = error as Partial<Record<keyof GrpcStatusError, unknown>>;
  return (
    typeof candidate.code === "number" &&
    typeof candidate.details === "string" &&
    typeof candidate.metadata === "object" &&
    candidate.metadata !== null &&
    typeof (candidate.metadata as { get?: unknown }).get === "function"
  );
}

/** The gRPC status code of a failed call, or undefined when `error` is not a call's error. */
export function statusCode(error: unknown): Code | undefined {
  if (error instanceof ConnectError) return error.code;
  if (isGrpcStatusError(error) && error.code > 0 && error.code in Code) return error.code as Code;
  return undefined;
}

/**
 * The status message as the server wrote it: ConnectError's `rawMessage`
 * (without the "[not_found]" prefix of `message`), grpc-js's `details`.
 */
export function statusMessage(error: unknown): string | undefined {
  if (error instanceof ConnectError) return error.rawMessage;
  if (isGrpcStatusError(error)) return error.details;
  return undefined;
}

/**
 * The cursor a watch that ended early named in its `watch-cursor` trailer
 * (with RESOURCE_EXHAUSTED or UNAVAILABLE): resume from it with
 * `resumeCursor`. Undefined when the error carries none.
 */
export function watchCursorOf(error: unknown): string | undefined {
  let value: unknown;
  if (error instanceof ConnectError) value = error.metadata.get(WATCH_CURSOR_METADATA);
  else if (isGrpcStatusError(error)) value = error.metadata.get(WATCH_CURSOR_METADATA)[0];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * The error as a ConnectError: itself, or a grpc-js ServiceError with its
 * code, message and watch-cursor (for code written against ConnectError, such
 * as the watch helper); anything else as connect reads it.
 */
export function asConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) return error;
  const code = statusCode(error);
  if (code === undefined) return ConnectError.from(error);
  const metadata = new Headers();
  const cursor = watchCursorOf(error);
  if (cursor !== undefined) metadata.set(WATCH_CURSOR_METADATA, cursor);
  return new ConnectError(statusMessage(error) ?? "", code, metadata, undefined, error);
}

const hasCode =
  (code: Code) =>
  (error: unknown): boolean =>
    statusCode(error) === code;

/** The session (or data key) does not exist, or belongs to another tenant. */
export const isNotFound = hasCode(Code.NotFound);
/** A request field is malformed or out of range; the message names the field. */
export const isInvalidArgument = hasCode(Code.InvalidArgument);
/** `expected_version` did not match: someone else wrote first; re-read and retry. */
export const isAborted = hasCode(Code.Aborted);
/** The call is not allowed in the session's state (e.g. extending an ended session). */
export const isFailedPrecondition = hasCode(Code.FailedPrecondition);
/** A watch cursor older than the retained history: list again, then watch again. */
export const isOutOfRange = hasCode(Code.OutOfRange);
/** The credential lacks the scope (or the session's access level forbids the write). */
export const isPermissionDenied = hasCode(Code.PermissionDenied);
/** No credential, or one the server does not accept. */
export const isUnauthenticated = hasCode(Code.Unauthenticated);
/** A documented limit was reached (sizes, counts, watchers, a watcher that fell behind). */
export const isResourceExhausted = hasCode(Code.ResourceExhausted);
/** The service or its store is unreachable or shutting down; safe to retry later. */
export const isUnavailable = hasCode(Code.Unavailable);
/** The call's deadline passed before an answer. */
export const isDeadlineExceeded = hasCode(Code.DeadlineExceeded);
