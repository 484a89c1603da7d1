/**
 * MemoryStore: the in-process SessionStore used when no REDIS_URL is set
 * (development, single-process demos). It has exactly the semantics of
 * RedisStore and passes the same conformance suite
 * (test/conformance/store-conformance.ts).
 *
 * Every method does all its work synchronously before returning its Promise,
 * so each method is one atomic step by construction: no other call can run in
 * between on Node's single thread. Nothing here starts a timer except a pending
 * blocking tail read, so the store never keeps the process alive; expiry
 * happens lazily when a method meets a due session and in expireDue (called by
 * the expiry scheduler).
 *
 * The event log (see store.ts) is an in-process array with the same ids,
 * retention and cursor rules as the Redis stream (MemoryEventLog).
 */
import type { UnreadableListener } from "../unreadable.js";
import { randomUUID } from "node:crypto";
import { SessionError } from "../../domain/errors.js";
import { ExpiryListeners } from "../expiry-listeners.js";
import { MemoryEventLog } from "./memory-event-log.js";
import { canWriteData, levelAllows, type AccessLevel, type SessionRecord } from "../../domain/model.js";
import type {
  ClearDataResult,
  CreateSessionInput,
  CreateSessionResult,
  DataWriteResult,
  DeleteDataResult,
  DueInfo,
  EventTail,
  Expiration,
  ExpiryListener,
  GetSessionOptions,
  ListCursor,
  ListFilter,
  ListResult,
  SessionCounters,
  SessionEventType,
  SessionGuard,
  DataKeyForms,
  SessionPatch,
  SessionStore,
  StoredEvent,
  StoreLimits,
} from "../store.js";
import { checkGuardedCreate, GUARD_DENIED_MESSAGE, guardNames, loggedKeyOf, requestIdKey, resolveStoreLimits, type ResolvedStoreLimits } from "../store.js";
import { WakeWaiters } from "../wake-waiters.js";

export interface MemoryStoreOptions {
  readonly limits: StoreLimits;
  /** The store's clock, ms since the epoch. Defaults to Date.now. */
  readonly now?: () => number;
}

/** A live session: its current record plus what only a live session has. */
interface LiveSession {
  record: SessionRecord;
  /** Data values by key (insertion order; listData sorts). */
  readonly data: Map<string, string>;
  /** UTF-8 bytes of all data values, kept on every data write (for limits.maxDataBytes). */
  dataBytes: number;
  /** The idempotency key it was created with, "" for none; freed when it ends. */
  readonly requestId: string;
}

/** Counters kept on every write, as in RedisStore: never computed by scanning. */
interface MutableCounters {
  total: number;
  active: number;
  expired: number;
  closed: number;
  readonly byLevel: Map<AccessLevel, number>;
  readonly bySource: Map<string, number>;
  /** The sealed name of each data source of bySource, when the records carry one (encryption on). */
  readonly sourceNames: Map<string, string>;
  endedDurationMsSum: number;
}

/** Everything of one tenant. Tenants share nothing, which is what isolates them. */
interface TenantState {
  readonly live: Map<string, LiveSession>;
  /** sessionId sets per user and per data source, so filtered listings need not scan the tenant. */
  readonly byUser: Map<string, Set<string>>;
  readonly bySource: Map<string, Set<string>>;
  /** requestId → sessionId of the live session created with it. */
  readonly requestIds: Map<string, string>;
  /** Ended sessions, kept until endTime + archiveRetentionMs. */
  readonly archive: Map<string, SessionRecord>;
  readonly counters: MutableCounters;
}

/** The same wording as the Redis store's (store/redis/errors.ts). */
const SESSIONS_PER_TENANT_MESSAGE = "the tenant already has the maximum number of live sessions";
const DATA_SOURCES_MESSAGE = "the tenant already has the maximum number of data sources with live sessions";

export class MemoryStore implements SessionStore {
  readonly kind = "memory";

  private readonly limits: ResolvedStoreLimits;
  private readonly now: () => number;
  private readonly tenants = new Map<string, TenantState>();
  private readonly log: MemoryEventLog;
  private readonly expiryListeners = new ExpiryListeners();
  /** Expirations of the call in progress, reported when it returns (see run). */
  private expiredInCall: Expiration[] = [];
  private disposed = false;
  /** The earliest expire time the last nextDue returned (Infinity: none), lowered by writes since. */
  private dueKnown = Number.POSITIVE_INFINITY;
  /** A write since the last nextDue gave a session an expire time before dueKnown. */
  private dueLowered = false;
  /** waitDue calls in progress. */
  private readonly dueWaiters = new WakeWaiters();

  constructor(options: MemoryStoreOptions) {
    this.limits = resolveStoreLimits(options.limits);
    this.now = options.now ?? Date.now;
    this.log = new MemoryEventLog(this.limits, this.now());
  }

  create(input: CreateSessionInput): Promise<CreateSessionResult> {
    return this.run(() => {
      checkGuardedCreate(input);
      const now = this.now();
      const t = this.tenant(input.tenant);
      const requestId = requestIdKey(input);
      if (requestId !== "") {
        const aliases = (input.requestIdAliases ?? []).map((alias) => requestIdKey({ requestId: alias, ...(input.guard === undefined ? {} : { guard: input.guard }) }));
        for (const name of [requestId, ...aliases]) {
          const existingId = t.requestIds.get(name);
          if (existingId === undefined) continue;
          // Meeting the session archives it if it is due, which frees the requestId.
          const existing = this.liveOrArchive(t, existingId, now, input.guard);
          if (existing) return { session: existing.record, created: false };
        }
      }
      this.checkTenantCaps(t, input.userId, input.dataSource, now);
      const evicted = this.makeRoomForUser(t, input.userId, now);
      const record = freeze({
        tenant: input.tenant,
        sessionId: input.sessionId ?? randomUUID(),
        userId: input.userId,
        dataSource: input.dataSource,
        accessLevel: input.accessLevel,
        status: "active",
        createTime: now,
        expireTime: now + input.ttlMs,
        lastAccessTime: now,
        endTime: 0,
        metadata: input.metadata,
        version: 1,
        ...(input.sealed === undefined ? {} : { sealed: input.sealed }),
      });
      t.live.set(record.sessionId, { record, data: new Map(), dataBytes: 0, requestId });
      if (requestId !== "") t.requestIds.set(requestId, record.sessionId);
      addToIndex(t.byUser, record.userId, record.sessionId);
      addToIndex(t.bySource, record.dataSource, record.sessionId);
      t.counters.total += 1;
      t.counters.active += 1;
      bump(t.counters.byLevel, record.accessLevel, 1);
      bump(t.counters.bySource, record.dataSource, 1);
      nameSource(t.counters, record);
      this.emit("created", record, [], now);
      return evicted.length === 0 ? { session: record, created: true } : { session: record, created: true, evicted };
    });
  }

  get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord> {
    return this.run(() => {
      const now = this.now();
      const t = this.tenants.get(tenant);
      const s = t && this.liveOrArchive(t, sessionId, now, options.guard);
      if (t && s) {
        checkLevel(s, options.guard);
        if (options.touch) s.record = freeze({ ...s.record, lastAccessTime: now });
        return s.record;
      }
      const archived = t && this.archived(t, sessionId, now, options.guard);
      if (archived && options.includeEnded) return archived;
      throw notFound();
    });
  }

  update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number, guard?: SessionGuard): Promise<SessionRecord> {
    return this.run(() => {
      const now = this.now();
      const { t, s } = this.mustBeLive(tenant, sessionId, now, guard);
      const old = s.record;
      if (expectedVersion !== undefined && expectedVersion !== old.version) {
        throw new SessionError("version_mismatch", `session version is ${old.version}, not ${expectedVersion}`);
      }
      if (patch.dataSource !== undefined && patch.dataSource !== old.dataSource && !this.sourceFits(t, patch.dataSource)) {
        throw new SessionError("limit_exceeded", DATA_SOURCES_MESSAGE);
      }
      const next = freeze({
        ...old,
        metadata: patch.metadata ?? old.metadata,
        accessLevel: patch.accessLevel ?? old.accessLevel,
        dataSource: patch.dataSource ?? old.dataSource,
        version: old.version + 1,
        ...(patch.sealed === undefined ? {} : { sealed: { ...old.sealed, ...patch.sealed } }),
      });
      if (next.accessLevel !== old.accessLevel) {
        bump(t.counters.byLevel, old.accessLevel, -1);
        bump(t.counters.byLevel, next.accessLevel, 1);
      }
      if (next.dataSource !== old.dataSource) {
        removeFromIndex(t.bySource, old.dataSource, sessionId);
        addToIndex(t.bySource, next.dataSource, sessionId);
        bump(t.counters.bySource, old.dataSource, -1);
        bump(t.counters.bySource, next.dataSource, 1);
        nameSource(t.counters, next);
      }
      s.record = next;
      this.emit("updated", next, [], now);
      return next;
    });
  }

  extend(tenant: string, sessionId: string, ttlMs: number, guard?: SessionGuard): Promise<SessionRecord> {
    return this.run(() => {
      const now = this.now();
      const { s } = this.mustBeLive(tenant, sessionId, now, guard);
      // Indexes hold ids only and listings sort by the record's expireTime, so
      // moving the record's expiry moves every index entry with it.
      s.record = freeze({ ...s.record, expireTime: now + ttlMs, version: s.record.version + 1 });
      this.emit("extended", s.record, [], now);
      return s.record;
    });
  }

  close(tenant: string, sessionId: string, guard?: SessionGuard): Promise<SessionRecord> {
    return this.run(() => {
      const now = this.now();
      const { t, s } = this.mustBeLive(tenant, sessionId, now, guard);
      const final = freeze({ ...s.record, status: "closed", endTime: now, version: s.record.version + 1 });
      this.end(t, s, final);
      t.counters.closed += 1;
      return final;
    });
  }

  list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult> {
    return this.run(() => {
      const now = this.now();
      const t = this.tenants.get(tenant);
      if (!t) return { sessions: [] };
      const matches: SessionRecord[] = [];
      for (const id of candidates(t, filter)) {
        const r = t.live.get(id)?.record;
        // Due sessions are skipped, not archived: listing is a read over live
        // sessions only, like RedisStore's range query from now on.
        if (!r || r.expireTime <= now) continue;
        if (filter.userId !== undefined && r.userId !== filter.userId) continue;
        if (filter.dataSource !== undefined && r.dataSource !== filter.dataSource) continue;
        if (after && compareToCursor(r, after) <= 0) continue;
        matches.push(r);
      }
      matches.sort(compareRecords);
      const page = matches.slice(0, Math.max(0, limit));
      const last = page[page.length - 1];
      if (matches.length > page.length && last) {
        return { sessions: page, next: { expireTime: last.expireTime, sessionId: last.sessionId } };
      }
      return { sessions: page };
    });
  }

  setData(tenant: string, sessionId: string, key: string, value: string, guard?: SessionGuard, forms: DataKeyForms = {}): Promise<DataWriteResult> {
    return this.run(() => {
      const now = this.now();
      const s = this.mustBeWritable(tenant, sessionId, now, guard);
      const held = [key, ...(forms.aliases ?? [])].flatMap((k) => s.data.get(k) ?? []);
      if (held.length === 0 && s.data.size >= this.limits.maxDataKeys) {
        throw new SessionError("limit_exceeded", `a session holds at most ${this.limits.maxDataKeys} data keys`);
      }
      const dataBytes = s.dataBytes - held.reduce((n, old) => n + byteLength(old), 0) + byteLength(value);
      const maxBytes = this.limits.maxDataBytes;
      if (maxBytes > 0 && dataBytes > maxBytes) {
        throw new SessionError("limit_exceeded", `a session holds at most ${maxBytes} bytes of data values`);
      }
      for (const alias of forms.aliases ?? []) s.data.delete(alias);
      s.data.set(key, value);
      s.dataBytes = dataBytes;
      return { version: this.written(s, now, [forms.loggedKey ?? key]) };
    });
  }

  getData(tenant: string, sessionId: string, key: string, guard?: SessionGuard): Promise<string | undefined> {
    return this.run(() => {
      const now = this.now();
      const s = this.mustHaveData(tenant, sessionId, now, guard);
      s.record = freeze({ ...s.record, lastAccessTime: now });
      return s.data.get(key);
    });
  }

  deleteData(tenant: string, sessionId: string, key: string, guard?: SessionGuard, forms: DataKeyForms = {}): Promise<DeleteDataResult> {
    return this.run(() => {
      const now = this.now();
      const s = this.mustBeWritable(tenant, sessionId, now, guard);
      let deleted = false;
      for (const k of [key, ...(forms.aliases ?? [])]) {
        const old = s.data.get(k);
        if (old === undefined) continue;
        s.data.delete(k);
        s.dataBytes -= byteLength(old);
        deleted = true;
      }
      return { deleted, version: this.written(s, now, [forms.loggedKey ?? key]) };
    });
  }

  listData(tenant: string, sessionId: string, includeValues: boolean, guard?: SessionGuard): Promise<Map<string, string>> {
    return this.run(() => {
      const now = this.now();
      const s = this.mustHaveData(tenant, sessionId, now, guard);
      s.record = freeze({ ...s.record, lastAccessTime: now });
      const out = new Map<string, string>();
      for (const key of [...s.data.keys()].sort(compareStrings)) {
        out.set(key, includeValues ? (s.data.get(key) ?? "") : "");
      }
      return out;
    });
  }

  clearData(tenant: string, sessionId: string, guard?: SessionGuard): Promise<ClearDataResult> {
    return this.run(() => {
      const now = this.now();
      const s = this.mustBeWritable(tenant, sessionId, now, guard);
      const keys = [...s.data].map(([key, stored]) => loggedKeyOf(key, stored)).sort(compareStrings);
      const deletedCount = keys.length;
      s.data.clear();
      s.dataBytes = 0;
      return { deletedCount, version: this.written(s, now, keys) };
    });
  }

  counters(tenant: string): Promise<SessionCounters> {
    return this.run(() => {
      const c = this.tenants.get(tenant)?.counters;
      if (!c) {
        return { total: 0, active: 0, expired: 0, closed: 0, activeByAccessLevel: {}, activeByDataSource: {}, endedDurationMsSum: 0 };
      }
      return {
        total: c.total,
        active: c.active,
        expired: c.expired,
        closed: c.closed,
        activeByAccessLevel: Object.fromEntries(c.byLevel),
        activeByDataSource: Object.fromEntries(c.bySource),
        ...(c.sourceNames.size === 0 ? {} : { dataSourceNames: Object.fromEntries(c.sourceNames) }),
        endedDurationMsSum: c.endedDurationMsSum,
      };
    });
  }

  /**
   * Scans every live session for due ones. A scan (rather than an ordered
   * index) is deliberate: this store serves development with few sessions,
   * the expiry scheduler calls it only when nextDue (a scan too) says a
   * session is due, and a scan cannot drift out of step with extend the way a
   * second index could. Archives past their retention are dropped in the same
   * pass.
   */
  expireDue(limit: number): Promise<SessionRecord[]> {
    return this.run(() => {
      const now = this.now();
      const due: { t: TenantState; s: LiveSession }[] = [];
      for (const t of this.tenants.values()) {
        this.pruneArchive(t, now);
        for (const s of t.live.values()) {
          if (s.record.expireTime <= now) due.push({ t, s });
        }
      }
      due.sort((x, y) => compareRecords(x.s.record, y.s.record));
      this.log.trimByTime(now);
      return due.slice(0, Math.max(0, limit)).map(({ t, s }) => this.expire(t, s));
    });
  }

  /** A scan, like expireDue: this store serves development with few sessions. */
  nextDue(): Promise<DueInfo> {
    return this.run(() => {
      let dueAt: number | undefined;
      for (const t of this.tenants.values()) {
        for (const s of t.live.values()) {
          if (dueAt === undefined || s.record.expireTime < dueAt) dueAt = s.record.expireTime;
        }
      }
      this.dueKnown = dueAt ?? Number.POSITIVE_INFINITY;
      this.dueLowered = false;
      return { dueAt, now: this.now() };
    });
  }

  waitDue(until: number, signal: AbortSignal): Promise<boolean> {
    if (this.dueLowered || this.disposed) return Promise.resolve(true);
    return this.dueWaiters.wait(until, signal);
  }

  lastEventId(tenant?: string): Promise<string> {
    return this.run(() => (tenant === undefined ? this.log.lastId : this.log.lastIdOf(tenant)));
  }

  readEvents(after: string, limit: number): Promise<StoredEvent[]> {
    return this.run(() => this.log.read(after, limit));
  }

  openEventTail(): EventTail {
    return this.log.openTail();
  }

  ping(): Promise<void> {
    return this.run(() => undefined);
  }

  dispose(): Promise<void> {
    this.disposed = true;
    this.tenants.clear();
    this.log.close();
    this.dueWaiters.wakeAll();
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- internals

  /** Runs one whole operation synchronously, turning a throw into a rejection. */
  private run<T>(op: () => T): Promise<T> {
    try {
      if (this.disposed) throw new SessionError("unavailable", "the memory store has been disposed");
      return Promise.resolve(op());
    } catch (e) {
      return Promise.reject(e);
    } finally {
      // Also after a failure: a call can archive a due session and then fail (extend of it: ended).
      const expired = this.expiredInCall;
      this.expiredInCall = [];
      this.expiryListeners.notify(expired);
    }
  }

  /** Entries of this log are the objects appended: none is ever unreadable. */
  onUnreadableEvent(_listener: UnreadableListener): () => void {
    return () => undefined;
  }

  onExpired(listener: ExpiryListener): () => void {
    return this.expiryListeners.add(listener);
  }

  private tenant(name: string): TenantState {
    let t = this.tenants.get(name);
    if (!t) {
      t = {
        live: new Map(),
        byUser: new Map(),
        bySource: new Map(),
        requestIds: new Map(),
        archive: new Map(),
        counters: {
          total: 0,
          active: 0,
          expired: 0,
          closed: 0,
          byLevel: new Map(),
          bySource: new Map(),
          sourceNames: new Map(),
          endedDurationMsSum: 0,
        },
      };
      this.tenants.set(name, t);
    }
    return t;
  }

  /** Whether the tenant may gain live data source `dataSource` under maxDataSourcesPerTenant. */
  private sourceFits(t: TenantState, dataSource: string): boolean {
    const max = this.limits.maxDataSourcesPerTenant;
    return max <= 0 || t.counters.bySource.has(dataSource) || t.counters.bySource.size < max;
  }

  /**
   * The per-tenant caps of a create, checked before anything changes; like the
   * Redis store, live sessions include due ones not yet archived, minus those
   * the user's close_oldest policy would close to make room.
   */
  private checkTenantCaps(t: TenantState, userId: string, dataSource: string, now: number): void {
    const maxSessions = this.limits.maxSessionsPerTenant;
    if (maxSessions > 0) {
      let excess = 0;
      if (this.limits.maxSessionsPerUser > 0) {
        let live = 0;
        for (const id of t.byUser.get(userId) ?? []) if ((t.live.get(id)?.record.expireTime ?? 0) > now) live += 1;
        excess = Math.max(0, live - this.limits.maxSessionsPerUser + 1);
        if (excess > 0 && this.limits.sessionsPerUserPolicy === "reject") return; // makeRoomForUser refuses it
      }
      if (t.counters.active - excess >= maxSessions) throw new SessionError("limit_exceeded", SESSIONS_PER_TENANT_MESSAGE);
    }
    if (!this.sourceFits(t, dataSource)) throw new SessionError("limit_exceeded", DATA_SOURCES_MESSAGE);
  }

  /**
   * Enforces limits.maxSessionsPerUser before a create: rejects, or closes the
   * user's oldest live sessions (by create time, then id) so that the new one
   * fits. Due sessions do not count. Returns the closed sessions' final records.
   */
  private makeRoomForUser(t: TenantState, userId: string, now: number): SessionRecord[] {
    const max = this.limits.maxSessionsPerUser;
    if (max <= 0) return [];
    const live: LiveSession[] = [];
    for (const id of t.byUser.get(userId) ?? []) {
      const s = t.live.get(id);
      if (s && s.record.expireTime > now) live.push(s);
    }
    const excess = live.length - max + 1;
    if (excess <= 0) return [];
    if (this.limits.sessionsPerUserPolicy === "reject") {
      throw new SessionError("limit_exceeded", `a user may have at most ${max} live sessions`);
    }
    live.sort((a, b) => a.record.createTime - b.record.createTime || compareStrings(a.record.sessionId, b.record.sessionId));
    return live.slice(0, excess).map((s) => {
      const final = freeze({ ...s.record, status: "closed", endTime: now, version: s.record.version + 1 });
      this.end(t, s, final);
      t.counters.closed += 1;
      return final;
    });
  }

  /**
   * The live session, or undefined; a due session met here is archived as
   * expired first. With a guard, another user's session is undefined too.
   */
  private liveOrArchive(t: TenantState, sessionId: string, now: number, guard?: SessionGuard): LiveSession | undefined {
    const s = t.live.get(sessionId);
    if (!s) return undefined;
    if (s.record.expireTime <= now) {
      this.expire(t, s);
      return undefined;
    }
    if (guard !== undefined && !guardNames(guard, s.record.userId)) return undefined;
    return s;
  }

  /** The archived record if still retained (and, with a guard, of its user); drops it once retention has passed. */
  private archived(t: TenantState, sessionId: string, now: number, guard?: SessionGuard): SessionRecord | undefined {
    const r = t.archive.get(sessionId);
    if (r && r.endTime + this.limits.archiveRetentionMs <= now) {
      t.archive.delete(sessionId);
      return undefined;
    }
    if (r && guard !== undefined && !guardNames(guard, r.userId)) return undefined;
    return r;
  }

  /** For update, extend, close: not_found when unknown (or another user's), ended when archived, then the guard's level. */
  private mustBeLive(tenant: string, sessionId: string, now: number, guard?: SessionGuard): { t: TenantState; s: LiveSession } {
    const t = this.tenants.get(tenant);
    if (!t) throw notFound();
    const s = this.liveOrArchive(t, sessionId, now, guard);
    if (s) {
      checkLevel(s, guard);
      return { t, s };
    }
    if (this.archived(t, sessionId, now, guard)) throw new SessionError("ended", "the session has ended");
    throw notFound();
  }

  /** For data operations: unknown, another user's and ended sessions are all not_found. */
  private mustHaveData(tenant: string, sessionId: string, now: number, guard?: SessionGuard): LiveSession {
    const t = this.tenants.get(tenant);
    const s = t && this.liveOrArchive(t, sessionId, now, guard);
    if (!s) throw notFound();
    checkLevel(s, guard);
    return s;
  }

  private mustBeWritable(tenant: string, sessionId: string, now: number, guard?: SessionGuard): LiveSession {
    const s = this.mustHaveData(tenant, sessionId, now, guard);
    if (!canWriteData(s.record.accessLevel)) {
      throw new SessionError("permission_denied", `access level ${s.record.accessLevel} does not allow writing data`);
    }
    return s;
  }

  /** Records a successful data write: version+1, the access time and its event. Returns the new version. */
  private written(s: LiveSession, now: number, keys: readonly string[]): number {
    s.record = freeze({ ...s.record, lastAccessTime: now, version: s.record.version + 1 });
    this.emit("data_changed", s.record, keys, now);
    return s.record.version;
  }

  /** Appends the event of a write, in the same synchronous step as the write. */
  private emit(type: SessionEventType, session: SessionRecord, dataKeys: readonly string[], now: number): void {
    // As in the Redis log: an event never carries the record's metadata tag.
    const sealed = session.sealed;
    const logged = sealed?.metadataTag === undefined ? session : freeze({ ...session, sealed: { ...(sealed.user === undefined ? {} : { user: sealed.user }), ...(sealed.dataSource === undefined ? {} : { dataSource: sealed.dataSource }) } });
    this.log.append(type, logged, dataKeys, now);
    if (session.status === "active" && session.expireTime < this.dueKnown) {
      this.dueKnown = session.expireTime;
      this.dueLowered = true;
      this.dueWaiters.wakeAll();
    }
  }

  /** Archives a due session as expired (endTime = expireTime), exactly as expireDue does. */
  private expire(t: TenantState, s: LiveSession): SessionRecord {
    const final = freeze({ ...s.record, status: "expired", endTime: s.record.expireTime, version: s.record.version + 1 });
    this.end(t, s, final);
    t.counters.expired += 1;
    this.expiredInCall.push({ record: final, expiredAt: this.now() });
    return final;
  }

  /**
   * Removes a session that has ended, archives its final record and appends
   * its closed or expired event (every way a session ends passes here).
   */
  private end(t: TenantState, s: LiveSession, final: SessionRecord): void {
    const id = final.sessionId;
    t.live.delete(id);
    removeFromIndex(t.byUser, final.userId, id);
    removeFromIndex(t.bySource, final.dataSource, id);
    if (s.requestId !== "" && t.requestIds.get(s.requestId) === id) t.requestIds.delete(s.requestId);
    t.archive.set(id, final);
    t.counters.active -= 1;
    bump(t.counters.byLevel, final.accessLevel, -1);
    bump(t.counters.bySource, final.dataSource, -1);
    nameSource(t.counters, final);
    t.counters.endedDurationMsSum += final.endTime - final.createTime;
    this.emit(final.status === "expired" ? "expired" : "closed", final, [], this.now());
  }

  private pruneArchive(t: TenantState, now: number): void {
    for (const [id, r] of t.archive) {
      if (r.endTime + this.limits.archiveRetentionMs <= now) t.archive.delete(id);
    }
  }
}

function byteLength(value: string): number {
  return Buffer.byteLength(value, "utf8");
}

/** permission_denied when a guard needs a higher access level than the session's. */
function checkLevel(s: LiveSession, guard: SessionGuard | undefined): void {
  if (guard !== undefined && !levelAllows(s.record.accessLevel, guard.level)) {
    throw new SessionError("permission_denied", GUARD_DENIED_MESSAGE);
  }
}

function notFound(): SessionError {
  return new SessionError("not_found", "session not found");
}

/** Records are shared with callers, so they are frozen: a caller cannot change stored state by accident. */
function freeze(r: SessionRecord): SessionRecord {
  return Object.freeze(r);
}

function addToIndex(index: Map<string, Set<string>>, key: string, id: string): void {
  let ids = index.get(key);
  if (!ids) {
    ids = new Set();
    index.set(key, ids);
  }
  ids.add(id);
}

function removeFromIndex(index: Map<string, Set<string>>, key: string, id: string): void {
  const ids = index.get(key);
  if (!ids) return;
  ids.delete(id);
  if (ids.size === 0) index.delete(key);
}

/** Adds delta to a counter map entry, removing entries that reach zero (absent means zero). */
function bump<K>(counts: Map<K, number>, key: K, delta: number): void {
  const n = (counts.get(key) ?? 0) + delta;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** Keeps the first sealed name of the record's data source while it has live sessions (as the Redis counters' n: fields). */
function nameSource(c: MutableCounters, record: SessionRecord): void {
  const name = record.sealed?.dataSource;
  if (!c.bySource.has(record.dataSource)) c.sourceNames.delete(record.dataSource);
  else if (name !== undefined && !c.sourceNames.has(record.dataSource)) c.sourceNames.set(record.dataSource, name);
}

/** The smallest id set that can hold every match of the filter. */
function candidates(t: TenantState, filter: ListFilter): Iterable<string> {
  const byUser = filter.userId !== undefined ? (t.byUser.get(filter.userId) ?? new Set<string>()) : undefined;
  const bySource = filter.dataSource !== undefined ? (t.bySource.get(filter.dataSource) ?? new Set<string>()) : undefined;
  if (byUser && bySource) return byUser.size <= bySource.size ? byUser : bySource;
  return byUser ?? bySource ?? t.live.keys();
}

/** Code-unit order, the same for every locale (sessionIds and data keys). */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Listing and expiry order: (expireTime, sessionId). */
function compareRecords(a: SessionRecord, b: SessionRecord): number {
  return a.expireTime - b.expireTime || compareStrings(a.sessionId, b.sessionId);
}

function compareToCursor(r: SessionRecord, c: ListCursor): number {
  return r.expireTime - c.expireTime || compareStrings(r.sessionId, c.sessionId);
}
