/**
 * The storage contract. Both backends (RedisStore, MemoryStore) implement it
 * with the same semantics and pass the same conformance suite
 * (test/conformance/store-conformance.ts).
 *
 * Every method is one atomic step in the backend: no caller ever reads and then
 * writes across two calls to keep an invariant. Stores take time from their own
 * clock (Redis TIME for Redis) and throw SessionError for every expected failure.
 *
 * A session whose expire_time has passed is treated as expired by every method
 * even before the sweeper (expireDue) has archived it: the method that meets it
 * archives it as expired first, in the same atomic step.
 */
import type { AccessLevel, SessionRecord } from "../session/model.js";

export interface CreateSessionInput {
  readonly tenant: string;
  readonly userId: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  readonly ttlMs: number;
  /** Serialized JSON object. */
  readonly metadata: string;
  /** Idempotency key; empty for none. */
  readonly requestId: string;
}

export interface CreateSessionResult {
  readonly session: SessionRecord;
  /** False when requestId matched a live session, which is returned instead. */
  readonly created: boolean;
}

/** Fields an update may change; an absent field is left as it is. */
export interface SessionPatch {
  /** Serialized JSON object replacing the metadata. */
  readonly metadata?: string;
  readonly accessLevel?: AccessLevel;
  readonly dataSource?: string;
}

export interface GetSessionOptions {
  /** Record the access time (live sessions only). */
  readonly touch: boolean;
  /** Return the archived state of an ended session instead of throwing not_found. */
  readonly includeEnded: boolean;
}

export interface ListFilter {
  readonly userId?: string;
  readonly dataSource?: string;
}

/** Position in a listing: sessions are ordered by (expireTime, sessionId). */
export interface ListCursor {
  readonly expireTime: number;
  readonly sessionId: string;
}

export interface ListResult {
  readonly sessions: SessionRecord[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: ListCursor;
}

export interface DataWriteResult {
  /** The session's version after the write. */
  readonly version: number;
}

export interface DeleteDataResult extends DataWriteResult {
  readonly deleted: boolean;
}

export interface ClearDataResult extends DataWriteResult {
  readonly deletedCount: number;
}

/** Counters kept on every write, never computed by scanning sessions. */
export interface SessionCounters {
  /** Sessions ever created. */
  readonly total: number;
  readonly active: number;
  readonly expired: number;
  readonly closed: number;
  /** Live sessions by access level; levels with none may be absent. */
  readonly activeByAccessLevel: Partial<Record<AccessLevel, number>>;
  /** Live sessions by data source; sources with none are absent. */
  readonly activeByDataSource: Record<string, number>;
  /** Sum of (endTime - createTime) over ended sessions, in ms. */
  readonly endedDurationMsSum: number;
}

export interface StoreLimits {
  /** Most data keys one session may hold (limit_exceeded beyond). */
  readonly maxDataKeys: number;
  /** How long the archive record of an ended session is kept. */
  readonly archiveRetentionMs: number;
  /**
   * How long after expire_time the session's keys are kept if the sweeper has
   * not archived it yet (the service was down). Redis deletes them after that.
   */
  readonly expiryGraceMs: number;
}

export interface SessionStore {
  /** "redis" or "memory", for logs. */
  readonly kind: string;

  create(input: CreateSessionInput): Promise<CreateSessionResult>;
  /** not_found for an unknown session, or an ended one without includeEnded. */
  get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord>;
  /** not_found, ended, version_mismatch. Increments the version. */
  update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number): Promise<SessionRecord>;
  /** Sets expireTime to now + ttlMs, for the session, its data and its index entries. not_found, ended. */
  extend(tenant: string, sessionId: string, ttlMs: number): Promise<SessionRecord>;
  /** Archives the final state with status closed, then removes the session, its data and index entries. not_found, ended. */
  close(tenant: string, sessionId: string): Promise<SessionRecord>;
  /** Live sessions only, ordered by (expireTime, sessionId), starting after the cursor. */
  list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult>;

  /** Data operations: not_found for unknown or ended sessions; writes need write or admin (permission_denied). */
  setData(tenant: string, sessionId: string, key: string, value: string): Promise<DataWriteResult>;
  /** undefined when the key is absent. */
  getData(tenant: string, sessionId: string, key: string): Promise<string | undefined>;
  deleteData(tenant: string, sessionId: string, key: string): Promise<DeleteDataResult>;
  /** All data of the session, keys sorted. Values only when includeValues (else empty strings). */
  listData(tenant: string, sessionId: string, includeValues: boolean): Promise<Map<string, string>>;
  clearData(tenant: string, sessionId: string): Promise<ClearDataResult>;

  counters(tenant: string): Promise<SessionCounters>;

  /**
   * Archives as expired up to `limit` sessions (of any tenant) whose expire_time
   * has passed, and returns their archived records. Safe to call from several
   * processes at once: each session is expired exactly once.
   */
  expireDue(limit: number): Promise<SessionRecord[]>;

  /** Resolves when the store can serve requests; rejects with unavailable otherwise. */
  ping(): Promise<void>;
  /** Releases connections and timers. */
  dispose(): Promise<void>;
}
