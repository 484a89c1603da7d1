/**
 * The seed's SessionAccessControl, for callers that act for one user (a
 * user-bound principal, or a service principal delegating for a user): the
 * user must own the session, and the session's access level must allow the
 * operation. READ reads the session and its data; WRITE also writes data and
 * metadata; ADMIN also changes the access level and the data source. Closing
 * and extending one's own session is allowed at every level: they end or
 * prolong the user's own sign-in, not change what it may touch.
 *
 * Callers acting for no user (trusted backends) reach every session of their
 * tenant; for them only data writes depend on the level (store.ts).
 *
 * The checks themselves run in the store, in the same atomic step as the
 * operation (SessionGuard, which also keeps a guarded create to its user):
 * here is only which level each operation needs.
 */
import type { ListFilter, SessionGuard } from "../store/store.js";
import { SessionError } from "../domain/errors.js";
import type { AccessLevel } from "../domain/model.js";

/** The least level each operation needs. */
export const REQUIRED_LEVEL = {
  get: "read",
  extend: "read",
  close: "read",
  getData: "read",
  listData: "read",
  setData: "write",
  deleteData: "write",
  clearData: "write",
} as const satisfies Readonly<Record<string, AccessLevel>>;

/** What an update changes decides its level: the access level or data source needs admin, metadata write. */
export function updateLevel(patch: { readonly metadata?: unknown; readonly accessLevel?: AccessLevel; readonly dataSource?: string }): AccessLevel {
  if (patch.accessLevel !== undefined || patch.dataSource !== undefined) return "admin";
  if (patch.metadata !== undefined) return "write";
  return "read";
}

/** The store guard of a call acting for `user`; undefined for a caller acting for no user. */
export function guardFor(user: string | undefined, level: AccessLevel): SessionGuard | undefined {
  return user === undefined ? undefined : { userId: user, level };
}

/**
 * A listing or watch filter of a caller acting for `user`: always that user's
 * sessions, whatever the request says. A request naming another user gets
 * nothing ("none"), never that user's sessions and never an error that would
 * depend on them.
 */
export function ownFilter<F extends ListFilter>(filter: F, user: string | undefined): F | "none" {
  if (user === undefined) return filter;
  if (filter.userId !== undefined && filter.userId !== user) return "none";
  return { ...filter, userId: user };
}

/**
 * GetSessionMetrics counts every user of the tenant; a caller acting for one
 * user is refused rather than shown other users' figures.
 */
export function checkMetricsFor(user: string | undefined): void {
  if (user !== undefined) {
    throw new SessionError("permission_denied", "GetSessionMetrics covers every user of the tenant: not available to a caller acting for a user");
  }
}
