/**
 * Turns what a Redis call can fail with into SessionError, so callers never see
 * a raw ioredis error: anything that means "Redis cannot serve us right now"
 * becomes unavailable; a script that reports a domain outcome becomes that kind.
 */
import { SessionError, isSessionError, type SessionErrorKind } from "../../domain/errors.js";
import { GUARD_DENIED_MESSAGE } from "../store.js";

/** Outcomes a script may report instead of "ok" (see lua/prelude.ts). */
const SCRIPT_KINDS: ReadonlySet<string> = new Set<SessionErrorKind>([
  "not_found",
  "ended",
  "version_mismatch",
  "permission_denied",
  "limit_exceeded",
  "out_of_range",
]);

const SCRIPT_MESSAGES: Record<string, string> = {
  not_found: "session not found",
  ended: "session has ended",
  version_mismatch: "session version does not match expected_version",
  permission_denied: "the session's access level does not allow writing data",
  limit_exceeded: "the session already holds the maximum number of data keys",
  out_of_range: "resume_cursor: the cursor is older than the retained event history; list the sessions and watch again",
};

/** Messages of limit_exceeded by the detail the script returns with it. */
const LIMIT_MESSAGES: Record<string, string> = {
  data_keys: "the session already holds the maximum number of data keys",
  data_bytes: "the session's data values would exceed the maximum total size",
  sessions_per_user: "the user already has the maximum number of live sessions",
  sessions_per_tenant: "the tenant already has the maximum number of live sessions",
  data_sources_per_tenant: "the tenant already has the maximum number of data sources with live sessions",
};

/** The SessionError for a script status other than "ok"; `detail` is the reply's second element, if any. */
export function scriptError(status: string, detail?: string): SessionError {
  if (SCRIPT_KINDS.has(status)) {
    const message =
      status === "limit_exceeded" && detail !== undefined
        ? LIMIT_MESSAGES[detail]
        : status === "permission_denied" && detail === "level"
          ? GUARD_DENIED_MESSAGE
          : undefined;
    return new SessionError(status as SessionErrorKind, message ?? SCRIPT_MESSAGES[status] ?? status);
  }
  return new SessionError("unavailable", `unexpected reply from redis script: ${status.slice(0, 40)}`);
}

/**
 * Replies from a reachable Redis that mean it cannot serve now (loading, out of
 * memory, a busy script, a read-only replica after failover).
 */
const UNAVAILABLE_REPLIES = /^(LOADING|OOM|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

export function toSessionError(e: unknown): SessionError | Error {
  if (isSessionError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  const replyError = e instanceof Error && e.name === "ReplyError";
  if (!replyError || UNAVAILABLE_REPLIES.test(message)) {
    // Connection refused/closed, timeouts, "Stream isn't writeable", MaxRetriesPerRequestError...
    return new SessionError("unavailable", `redis unavailable: ${message}`);
  }
  // A script or protocol bug: not the caller's fault and not an outage. Kept as a
  // plain Error (the API maps it to INTERNAL); Redis error text carries no values.
  return new Error(`redis command failed: ${message}`, { cause: e });
}
