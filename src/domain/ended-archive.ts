/**
 * The durable archive of ended sessions, as the session layer reads it
 * (a port: implemented on PostgreSQL by src/archive/pg-archive.ts). Records come back
 * as stored: metadata still sealed, opened by SessionManager.view().
 */
import type { SessionRecord } from "./model.js";

export interface EndedFilter {
  readonly userId?: string;
  readonly dataSource?: string;
  /** Only sessions that ended at or after this time (ms since the epoch). */
  readonly endedAfter?: number;
  /** Only sessions that ended before this time. */
  readonly endedBefore?: number;
}

/** Position in a listing of ended sessions: ordered by (endTime, sessionId), newest first. */
export interface EndedPosition {
  readonly endTime: number;
  readonly sessionId: string;
}

export interface EndedPage {
  readonly sessions: SessionRecord[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: EndedPosition;
}

export interface EndedArchive {
  /** The archived session, or undefined. Throws SessionError("unavailable") when the archive cannot be reached. */
  find(tenant: string, sessionId: string): Promise<SessionRecord | undefined>;
  list(tenant: string, filter: EndedFilter, limit: number, after?: EndedPosition): Promise<EndedPage>;
}
