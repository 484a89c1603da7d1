/**
 * Turns what a Redis call can fail with into SessionError, so callers never see
 * a raw ioredis error: a script that reports a domain outcome becomes that kind;
 * transport failures are classified by call-outcome.ts.
 */
import { SessionError, type SessionErrorKind } from "../../domain/errors.js";
import { classifyFailure } from "./call-outcome.js";
import { EVENT_LOG_RESET_MESSAGE, GUARD_DENIED_MESSAGE } from "../store.js";

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
    if (status === "out_of_range" && detail === "generation") return new SessionError("out_of_range", EVENT_LOG_RESET_MESSAGE);
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

/** A failed call whose command is known to have been sent (see call-outcome.ts). */
export function toSessionError(e: unknown): SessionError | Error {
  return classifyFailure(e, true);
}
