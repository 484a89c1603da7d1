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
 * even before the expiry scheduler (expireDue) has archived it: the method that meets it
 * archives it as expired first, in the same atomic step.
 *
 * Event log: every write that changes a session appends one event to the
 * store's event log in the same atomic step (Redis: XADD inside the script), so
 * the log holds every change of every process, in one order, exactly once. The
 * event id is the watch cursor. The log keeps the last eventRetentionCount
 * events and drops events older than eventRetentionMs (Redis trims whole
 * stream nodes, so it may keep somewhat more, never less); a watcher can resume
 * from any cursor still inside both bounds.
 */
import { SessionError } from "../domain/errors.js";
import type { AccessLevel, SealedFields, SessionRecord } from "../domain/model.js";
import type { UnreadableListener } from "./unreadable.js";
import type { PartitionSecretCopies } from "./partition-secret.js";

export interface CreateSessionInput {
  readonly tenant: string;
  /**
   * The new session's id (a lowercase UUID), chosen by the caller so that it
   * can bind encrypted fields to it before the write; absent: the store picks
   * a random UUID. Ignored when requestId matches a live session.
   */
  readonly sessionId?: string;
  readonly userId: string;
  /**
   * What places the user's sessions where the store places them by user (a
   * partitioned Redis layout), when not userId itself: encryption on, a
   * keyed HMAC that stays the same across key rotations (partition-secret.ts),
   * where userId is a token of the primary key. Never stored. Absent: userId.
   */
  readonly userPlacement?: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  readonly ttlMs: number;
  /** Serialized JSON object. */
  readonly metadata: string;
  /** Idempotency key (as stored: see FieldCipher.indexNames); empty for none. */
  readonly requestId: string;
  /**
   * Other stored forms of the same idempotency key (written under keys that
   * were primary before a rotation): a retry finds a session created under any
   * of them. Absent: none.
   */
  readonly requestIdAliases?: readonly string[];
  /**
   * The caller acts for one user (see SessionGuard): userId must be that user
   * (else permission_denied), and requestId is scoped to that user, so a
   * request id another user's session was created with is never answered
   * with that session.
   */
  readonly guard?: SessionGuard;
  /** Sealed forms to keep with the record (encryption on, see sealed-store.ts); absent: none. */
  readonly sealed?: SealedFields;
}

/**
 * A caller acting for one user (a user-bound or delegating principal): the
 * store checks it in the same atomic step as the operation. A session of
 * another user is not_found, exactly as an unknown one (ended ones too);
 * a session of the user whose access level is below `level` is
 * permission_denied. Without a guard, every session of the tenant is reachable.
 */
export interface SessionGuard {
  readonly userId: string;
  /**
   * Other stored forms of the same user (keyed HMACs under keys that were
   * primary before a rotation): a session stored under any of them is the
   * user's. Absent: none.
   */
  readonly userAliases?: readonly string[];
  /** The least access level the operation needs (see session/access-policy.ts). */
  readonly level: AccessLevel;
}

/** Throws permission_denied when a guarded create names another user than the guard's. */
export function checkGuardedCreate(input: Pick<CreateSessionInput, "userId" | "guard">): void {
  if (input.guard !== undefined && input.guard.userId !== input.userId) {
    throw new SessionError("permission_denied", "user_id: a caller acting for a user may create sessions for that user only", "user_id");
  }
}

/** The request-id key of a create: the tenant's namespace, or for a guarded create its user's. */
export function requestIdKey(input: Pick<CreateSessionInput, "requestId" | "guard">): string {
  if (input.requestId === "" || input.guard === undefined) return input.requestId;
  // A user id holds no control characters (api/validate.ts), so the first newline ends it.
  return `u:${input.guard.userId}\n${input.requestId}`;
}

export interface CreateSessionResult {
  readonly session: SessionRecord;
  /** False when requestId matched a live session, which is returned instead. */
  readonly created: boolean;
  /**
   * Sessions of the same user closed to make room (sessionsPerUserPolicy
   * "close_oldest"), as archived; absent or empty when none was.
   */
  readonly evicted?: readonly SessionRecord[];
}

/** Fields an update may change; an absent field is left as it is. */
export interface SessionPatch {
  /** Serialized JSON object replacing the metadata. */
  readonly metadata?: string;
  readonly accessLevel?: AccessLevel;
  readonly dataSource?: string;
  /**
   * Sealed forms that change with the patch (encryption on): dataSource with
   * a new data source, metadataTag with new metadata.
   */
  readonly sealed?: Pick<SealedFields, "dataSource" | "metadataTag">;
}

/** The other forms of a data key of a write (see SessionStore.setData). */
export interface DataKeyForms {
  /** What the event logs for the key (encryption on: its sealed name); absent: the key. */
  readonly loggedKey?: string;
  /** Other stored forms of the key (tokens under rotated keys): a set or delete removes them too. */
  readonly aliases?: readonly string[];
}

/** The prefixes of sealed forms (crypto/field-cipher.ts). */
const SEALED = /^e[12]:/;

/**
 * With encryption on, a data value is stored as `<sealed key name> <sealed
 * value>` (sealed-store.ts; sealed forms hold no space): what an event logs for
 * its key is then the sealed name, else the key itself. (Lua mirror: logged_key
 * in lua/prelude.ts.)
 */
export function loggedKeyOf(key: string, stored: string): string {
  const space = stored.indexOf(" ");
  return SEALED.test(stored) && space > 0 ? stored.slice(0, space) : key;
}

/** True when the guard names this stored user (its user id or one of its aliases). */
export function guardNames(guard: SessionGuard, userId: string): boolean {
  return guard.userId === userId || (guard.userAliases?.includes(userId) ?? false);
}

export interface GetSessionOptions {
  /** Record the access time (live sessions only). */
  readonly touch: boolean;
  /** Return the archived state of an ended session instead of throwing not_found. */
  readonly includeEnded: boolean;
  readonly guard?: SessionGuard;
}

export interface ListFilter {
  readonly userId?: string;
  /** With userId: the user's placement (see CreateSessionInput.userPlacement); absent: userId. */
  readonly userPlacement?: string;
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
  /** Session ids of records on this page that could not be read and were left out (see unreadable.ts). */
  readonly unreadable?: readonly string[];
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
  /**
   * With encryption on, the sealed name of each data source of
   * activeByDataSource (whose keys are then keyed HMACs); absent otherwise.
   */
  readonly dataSourceNames?: Readonly<Record<string, string>>;
  /** Sum of (endTime - createTime) over ended sessions, in ms. */
  readonly endedDurationMsSum: number;
}

/** What happened to a session. */
export type SessionEventType = "created" | "updated" | "extended" | "closed" | "expired" | "data_changed";

/** Every event type, in the order of the proto enum. */
export const SESSION_EVENT_TYPES: readonly SessionEventType[] = ["created", "updated", "extended", "closed", "expired", "data_changed"];

/** One entry of the event log. */
export interface StoredEvent {
  /**
   * Position in the log, "<ms>-<seq>" (a Redis stream id): unique, ordered,
   * and the cursor a watcher resumes after (see event-id.ts).
   */
  readonly id: string;
  readonly type: SessionEventType;
  /** When the event was recorded (store clock, ms since the epoch). */
  readonly time: number;
  /**
   * The session after the event (metadata as stored, never data values). Only
   * the session layer may decode it; never log it.
   */
  readonly session: SessionRecord;
  /** For data_changed: the keys written or deleted (for a clear: every key removed). Empty otherwise. */
  readonly dataKeys: readonly string[];
}

/** What every reader of an event needs, read without the rest of the entry. */
export interface EventHead {
  readonly id: string;
  readonly type: SessionEventType;
  readonly tenant: string;
  readonly sessionId: string;
  /** The session's expire time after the event. */
  readonly expireTime: number;
}

/** An entry an event tail read: its head, and its whole event on demand. */
export interface TailEntry extends EventHead {
  /**
   * The whole event, decoded (and opened) now; undefined when it does not
   * decode or open, after reporting it to the store's unreadable listeners.
   * Asked at most once.
   */
  event(): StoredEvent | undefined;
}

/**
 * A blocking reader of the event log on its own connection, for the one event
 * reader of a process (src/streaming/event-hub.ts).
 */
export interface EventTail {
  /**
   * Up to `limit` events after `after`, oldest first, waiting up to blockMs for
   * the first one (an empty array when none came). Does not check retention:
   * the caller validates its position with readEvents after a failure.
   */
  read(after: string, limit: number, blockMs: number): Promise<StoredEvent[]>;
  /**
   * As read, with each entry decoded only as far as its head until its event
   * is asked for (a store may leave it out; the event reader then uses read).
   * Why: every process's event reader reads every entry of the log, and most
   * entries are needed whole only by a process with a watch of their tenant.
   */
  readEntries?(after: string, limit: number, blockMs: number): Promise<TailEntry[]>;
  /** Releases the connection; a pending read resolves empty or rejects. */
  close(): void;
}

/** Where the scheduler stands: the earliest due time and the store's clock, read together. */
export interface DueInfo {
  /** Lower bound of the earliest expire time of a live session; undefined when none is live. */
  readonly dueAt: number | undefined;
  /** The store's clock at the same moment. */
  readonly now: number;
}

/**
 * A session archived as expired by a call on this store object: by expireDue
 * (the scheduler) or lazily, by any other method that met it after its
 * expire_time. Each expiry is performed by exactly one store call in exactly
 * one process, so it is reported once, by the process that did it.
 */
export interface Expiration {
  /** The archived record (status expired, endTime = expireTime). */
  readonly record: SessionRecord;
  /** When it was archived and its EXPIRED event written, on the store's clock (ms since the epoch). */
  readonly expiredAt: number;
}

/** Told about expirations right after the store call that performed them; must not throw. */
export type ExpiryListener = (expirations: readonly Expiration[]) => void;

/** Server settings being kept applied (see SessionStore.keepServerSettings). */
export interface ServerSettingsKeeper {
  stop(): Promise<void>;
}

export interface StoreLimits {
  /** Most data keys one session may hold (limit_exceeded beyond). */
  readonly maxDataKeys: number;
  /**
   * Most bytes of data values one session may hold, counted as stored (UTF-8
   * bytes of the value strings the store is given); limit_exceeded beyond.
   * Absent or 0: no cap.
   */
  readonly maxDataBytes?: number;
  /**
   * Most live sessions one user (of one tenant) may have; absent or 0: no cap.
   * A create beyond it fails with limit_exceeded, or with
   * sessionsPerUserPolicy "close_oldest" first closes the user's oldest
   * sessions (by create time) in the same atomic step.
   */
  readonly maxSessionsPerUser?: number;
  /**
   * Most live sessions of one tenant (due ones not yet archived count); absent
   * or 0: no cap. A create beyond it fails with limit_exceeded and writes nothing.
   */
  readonly maxSessionsPerTenant?: number;
  /**
   * Most distinct data sources with live sessions in one tenant; absent or 0:
   * no cap. A create or update that would add one beyond it fails with limit_exceeded.
   */
  readonly maxDataSourcesPerTenant?: number;
  /** Default "reject". */
  readonly sessionsPerUserPolicy?: SessionsPerUserPolicy;
  /** How long the archive record of an ended session is kept. */
  readonly archiveRetentionMs: number;
  /**
   * How long after expire_time the session's keys are kept if the expiry scheduler
   * has not archived it yet (the service was down). Redis deletes them after that.
   */
  readonly expiryGraceMs: number;
  /** The event log keeps the last this many events (default 100000). */
  readonly eventRetentionCount?: number;
  /** The event log drops events older than this, in ms (default 1 h). */
  readonly eventRetentionMs?: number;
}

/**
 * The message of the out_of_range a store gives for a cursor of an event log
 * it no longer has (Redis lost its data; another MemoryStore process). The
 * event reader tells it from a cursor beyond retention by this message.
 */
export const EVENT_LOG_RESET_MESSAGE =
  "resume_cursor: the event log was reset since this cursor (the store lost its data); list the sessions and watch again";

export const DEFAULT_EVENT_RETENTION_COUNT = 100_000;
export const DEFAULT_EVENT_RETENTION_MS = 3_600_000;

/**
 * A condition of the backend that readiness and metrics report:
 * "eviction_policy" (Redis may delete keys on its own: anything but
 * maxmemory-policy noeviction), "memory_full" (Redis refuses writes).
 */
export type StoreProblem = "eviction_policy" | "memory_full";

export interface StoreProblems {
  readonly problems: readonly StoreProblem[];
  /** Redis's maxmemory-policy, when known. */
  readonly evictionPolicy?: string;
}

/** StoreLimits with every default applied. */
export type ResolvedStoreLimits = Required<StoreLimits>;

/** Applies the defaults of StoreLimits: the one place they are applied, for both stores. */
export function resolveStoreLimits(limits: StoreLimits): ResolvedStoreLimits {
  return {
    maxDataKeys: limits.maxDataKeys,
    maxDataBytes: limits.maxDataBytes ?? 0,
    maxSessionsPerUser: limits.maxSessionsPerUser ?? 0,
    maxSessionsPerTenant: limits.maxSessionsPerTenant ?? 0,
    maxDataSourcesPerTenant: limits.maxDataSourcesPerTenant ?? 0,
    sessionsPerUserPolicy: limits.sessionsPerUserPolicy ?? "reject",
    archiveRetentionMs: limits.archiveRetentionMs,
    expiryGraceMs: limits.expiryGraceMs,
    eventRetentionCount: limits.eventRetentionCount ?? DEFAULT_EVENT_RETENTION_COUNT,
    eventRetentionMs: limits.eventRetentionMs ?? DEFAULT_EVENT_RETENTION_MS,
  };
}

/** What a create does when the user already has maxSessionsPerUser live sessions. */
export type SessionsPerUserPolicy = "reject" | "close_oldest";

export interface SessionStore {
  /** "redis" or "memory", for logs. */
  readonly kind: string;
  /**
   * A new session id for a user's session (a random UUID v4), where the store
   * places sessions by id (a partitioned Redis layout, see redis/keys.ts);
   * absent: any random UUID.
   */
  newSessionId?(tenant: string, userId: string): string;
  /**
   * Where a store that places sessions by user keeps the partition secret
   * (partition-secret.ts); absent or undefined: it does not place by user.
   */
  partitionSecretCopies?(): PartitionSecretCopies | undefined;

  create(input: CreateSessionInput): Promise<CreateSessionResult>;
  /** not_found for an unknown session, or an ended one without includeEnded. */
  get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord>;
  /**
   * not_found, ended, permission_denied (guard), version_mismatch, checked in
   * that order. Increments the version.
   */
  update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number, guard?: SessionGuard): Promise<SessionRecord>;
  /** Sets expireTime to now + ttlMs, for the session, its data and its index entries. not_found, ended. */
  extend(tenant: string, sessionId: string, ttlMs: number, guard?: SessionGuard): Promise<SessionRecord>;
  /** Archives the final state with status closed, then removes the session, its data and index entries. not_found, ended. */
  close(tenant: string, sessionId: string, guard?: SessionGuard): Promise<SessionRecord>;
  /** Live sessions only, ordered by (expireTime, sessionId), starting after the cursor. */
  list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult>;

  /**
   * Data operations: not_found for unknown or ended sessions; writes need
   * write or admin (permission_denied). `forms` (encryption on, see
   * sealed-store.ts) say how the key is logged and stored otherwise.
   */
  setData(tenant: string, sessionId: string, key: string, value: string, guard?: SessionGuard, forms?: DataKeyForms): Promise<DataWriteResult>;
  /** undefined when the key is absent. */
  getData(tenant: string, sessionId: string, key: string, guard?: SessionGuard): Promise<string | undefined>;
  deleteData(tenant: string, sessionId: string, key: string, guard?: SessionGuard, forms?: DataKeyForms): Promise<DeleteDataResult>;
  /** All data of the session, keys sorted. Values only when includeValues (else empty strings). */
  listData(tenant: string, sessionId: string, includeValues: boolean, guard?: SessionGuard): Promise<Map<string, string>>;
  /** Its event logs loggedKeyOf each key removed. */
  clearData(tenant: string, sessionId: string, guard?: SessionGuard): Promise<ClearDataResult>;

  counters(tenant: string): Promise<SessionCounters>;

  /**
   * Archives as expired up to `limit` sessions (of any tenant) whose expire_time
   * has passed, and returns their archived records. Safe to call from several
   * processes at once: each session is expired exactly once.
   */
  expireDue(limit: number): Promise<SessionRecord[]>;

  /** The earliest time a session may come due, with the store's clock (for the expiry scheduler). */
  nextDue(): Promise<DueInfo>;

  /**
   * Waits for a write (of any process sharing the store) that gives a live
   * session an expire time before the earliest that the last nextDue knew:
   * resolves true then, also for one made between that nextDue and this
   * call, and when the store cannot tell (a failed read); false at `until`
   * (epoch ms) or once `signal` aborts. A store with a due queue per
   * partition tells per queue, so a session due before its own queue's head
   * alone may wake it too (one look more). The expiry scheduler sleeps on it,
   * so that it wakes early for such a session without reading every event.
   */
  waitDue(until: number, signal: AbortSignal): Promise<boolean>;

  /**
   * Optional: applies the server settings the backend relies on and keeps them
   * applied until stopped (Redis: hash-max-listpack-value, again after a
   * restart or a failover, which forget CONFIG SET). Resolves once started;
   * an unreachable server gets them when it answers.
   */
  keepServerSettings?(): Promise<ServerSettingsKeeper>;

  /**
   * The id of the last event appended so far; with none, the start of the
   * log's generation ("<ms>-0", see readEvents), never "0-0". With a tenant,
   * the id of that tenant's last event of this generation (the generation's
   * start when none): watchers are only ever shown the latter, so their
   * cursors say nothing about other tenants' writes.
   */
  lastEventId(tenant?: string): Promise<string>;
  /**
   * Up to `limit` events strictly after the cursor `after`, oldest first.
   * out_of_range when events after it may have been dropped by retention, or
   * when the log never reached it (a cursor of another log), or with
   * EVENT_LOG_RESET_MESSAGE when the cursor is older than the log's
   * generation: the log was started again after a data loss, so the cursor's
   * events are gone ("0-0", the log's start, is of every generation);
   * invalid_argument for a malformed cursor.
   */
  readEvents(after: string, limit: number): Promise<StoredEvent[]>;
  /** A blocking reader on its own connection. */
  openEventTail(): EventTail;
  /**
   * Calls the listener with every log entry readEvents or a tail skipped
   * because it does not decode (see unreadable.ts). Reads never fail or stall
   * on such an entry. Returns the remover.
   */
  onUnreadableEvent(listener: UnreadableListener): () => void;

  /**
   * Calls the listener with every session a call on this store object archived
   * as expired, lazily or through expireDue (for the audit log and the expiry
   * lag metric). Returns the function that removes it.
   */
  onExpired(listener: ExpiryListener): () => void;

  /**
   * Resolves when the store can serve every request (Redis: each of its
   * connections is ready, and the command connection answers PING); rejects
   * with unavailable otherwise.
   */
  ping(): Promise<void>;
  /**
   * Optional push of connection state changes, so readiness can turn
   * NOT_SERVING the moment a connection drops instead of at the next ping:
   * `ready` is false as soon as any connection the store needs is not ready,
   * true when all of them are again. Returns the function that unsubscribes.
   */
  watchReadiness?(listener: (ready: boolean) => void): () => void;
  /**
   * Optional: the backend's conditions that make it unsafe or unable to serve
   * writes, read fresh (one round trip); rejects with unavailable when the
   * backend cannot be asked.
   */
  problems?(): Promise<StoreProblems>;
  /** Releases connections and timers. */
  dispose(): Promise<void>;
}

/** The message of a guard's permission_denied, the same on every backend. */
export const GUARD_DENIED_MESSAGE = "the session's access level does not allow this operation";
