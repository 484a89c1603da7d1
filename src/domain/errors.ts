/**
 * Domain errors. Stores and the session layer throw these; the API layer maps
 * each kind to one gRPC status code, so the mapping lives in one place.
 */
export type SessionErrorKind =
  /** Unknown session, unknown data key, or a session that has ended (for data operations). */
  | "not_found"
  /** The session exists but has ended (closed or expired), so it cannot be changed. */
  | "ended"
  /** expected_version did not match. */
  | "version_mismatch"
  /** The session's access level does not allow the operation. */
  | "permission_denied"
  /** A per-session limit (such as the number of data keys) would be exceeded. */
  | "limit_exceeded"
  /** A request value is malformed or out of range. */
  | "invalid_argument"
  /** The backing store cannot be reached in time; the call was not applied. */
  | "unavailable"
  /** The call reached the store but its answer did not come back in time: it may or may not have been applied. */
  | "deadline_exceeded"
  /** The connection to the store broke after the call was sent: it may or may not have been applied. */
  | "outcome_unknown"
  /** A watch cursor is older than the retained event history (or unknown to it): re-list, then watch again. */
  | "out_of_range"
  /**
   * Stored state of ours that cannot be read (an event or record that does not
   * decode or decrypt): the call that needed it fails, no other. The message
   * names no value.
   */
  | "internal";

export class SessionError extends Error {
  override readonly name = "SessionError";
  constructor(
    readonly kind: SessionErrorKind,
    message: string,
    /** The request field at fault, for invalid_argument. */
    readonly field?: string,
  ) {
    super(message);
  }
}

export function isSessionError(e: unknown): e is SessionError {
  return e instanceof SessionError;
}
