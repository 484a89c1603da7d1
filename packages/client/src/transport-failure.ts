/**
 * Tells a failure of the connection (a replica crashed, a proxy reset the
 * stream, GOAWAY) from a status the server chose to send.
 *
 * connect-node reports a reset connection as ABORTED (ECONNRESET,
 * ERR_STREAM_DESTROYED) and an HTTP/2 RST_STREAM CANCEL as CANCELED, while
 * this API uses ABORTED for a version mismatch. A status the server sent comes
 * from its trailers and has no `cause`; a transport failure either wraps the
 * Node.js error that caused it or is a CANCELED the caller did not ask for.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** Codes connect-node gives transport failures that would otherwise read as a server's answer. */
const TRANSPORT_CODES: ReadonlySet<Code> = new Set([Code.Aborted, Code.Canceled, Code.Internal, Code.Unavailable, Code.Unknown]);

/**
 * Whether `error` is a transport failure rather than a status sent by the
 * server. `callerAborted` is whether the caller's own signal ended the call
 * (a CANCELED then is the caller's, not the transport's).
 */
export function isTransportFailure(error: ConnectError, callerAborted: boolean): boolean {
  if (callerAborted) return false;
  if (error.code === Code.Canceled) return true;
  if (!TRANSPORT_CODES.has(error.code)) return false;
  return error.cause !== undefined && !(error.cause instanceof ConnectError);
}

/**
 * The error a unary caller sees for a transport failure: UNAVAILABLE when the
 * connection could not be made (the request never left), otherwise UNKNOWN
 * (the request may have reached the server and been applied). Never ABORTED,
 * which means a version mismatch here.
 */
export function transportFailureError(error: ConnectError): ConnectError {
  const neverSent = error.code === Code.Unavailable && hasNodeCode(error, /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)$/);
  if (neverSent) return error;
  return new ConnectError(
    `connection to sessiond lost before the reply (${error.rawMessage}); the call may or may not have been applied`,
    Code.Unknown,
    error.metadata,
    undefined,
    error,
  );
}

function hasNodeCode(error: ConnectError, pattern: RegExp): boolean {
  let reason: unknown = error.cause;
  for (let depth = 0; reason instanceof Error && depth < 8; depth += 1) {
    const code = (reason as NodeJS.ErrnoException).code;
    if (typeof code === "string" && pattern.test(code)) return true;
    reason = reason.cause;
  }
  return false;
}
