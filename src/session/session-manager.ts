/**
 * The session domain layer: what each RPC does, in terms of the store.
 *
 * The API layer (src/api/validate.ts) checks the format of every request field
 * before calling in here; this layer owns what needs the stored state or the
 * encoded form: JSON encoding and its size limits, the read-merge-write of
 * merged metadata, and the default TTL.
 * Events are not published here: every store write appends its event to the
 * store's event log in the same atomic step. The process's EventHub and
 * ExpiryScheduler are composed beside the manager (app.ts), not inside it.
 *
 * Methods take the tenant first: tenants are isolated by the store, and the API
 * layer decides which tenant a call acts on. Methods about sessions take last
 * the user the call acts for, if any (see access-policy.ts): the store then
 * keeps the call to that user's sessions and their access levels.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config/config.js";
import type { Logger } from "../logging/logger.js";
import { countUnreadable } from "../observability/metrics.js";
import { KeyedFieldCipher, dataField, METADATA_FIELD, type FieldCipher } from "../crypto/field-cipher.js";
import type { ListCursor, ListFilter, SessionCounters, SessionGuard, SessionPatch, SessionStore, StoredEvent } from "../store/store.js";
import type { EndedArchive, EndedFilter, EndedPosition } from "../domain/ended-archive.js";
import { isSessionError, SessionError } from "../domain/errors.js";
import { checkMetricsFor, guardFor, ownFilter, REQUIRED_LEVEL, updateLevel } from "./access-policy.js";
import { decodeValue, EMPTY_METADATA, encodeJson, jsonByteLength, mergeMetadata } from "./json-codec.js";
import { levelAllows, type AccessLevel, type SessionRecord } from "../domain/model.js";
import { toSessionView, type SessionView } from "./session-view.js";
import type { ReadCache } from "./read-cache.js";

export type { SessionView } from "./session-view.js";

export interface SessionManagerOptions {
  readonly store: SessionStore;
  readonly config: Config;
  /** Where unreadable records left out of listings are logged (one error line each, ids only). */
  readonly logger?: Logger;
  /**
   * Seals metadata and data values before they reach the store and opens them
   * after (encryption at rest). Default: the default cipher with a random key that
   * dies with the process (fine for the memory store only; the app always
   * passes the configured one).
   */
  readonly cipher?: FieldCipher;
  /**
   * Told about every session that ended without an RPC asking for it: expired
   * by this process (by its expiry scheduler, or lazily by any call that met
   * the session after its expire_time), or closed to make room for a user's
   * new session. Each such end is told once, by the process that performed
   * it. `at` is when it happened on the store's clock (for an expiry: when it
   * was archived, which is later than expire_time by the expiry lag). For the
   * audit log and metrics; must not throw.
   */
  readonly onSystemEnd?: (reason: "expired" | "evicted", record: SessionRecord, at: number) => void;
  /** Copies of live sessions that may answer gets (READ_CACHE_MAX_AGE; a guarded get only where its guard would pass); absent: every get reads the store. */
  readonly readCache?: ReadCache;
  /**
   * The durable archive of ended sessions (ARCHIVE_DATABASE_URL): where
   * get with includeEnded looks after the store's own archive has expired,
   * and what listEnded reads. Absent: neither.
   */
  readonly endedArchive?: EndedArchive;
}

export interface CreateSessionParams {
  readonly userId: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  /** Absent: config.ttl.defaultMs (applied here only). */
  readonly ttlMs?: number;
  /** Absent: an empty object. */
  readonly metadata?: JsonObject;
  /** Idempotency key; absent or empty for none. */
  readonly requestId?: string;
}

export interface CreateSessionOutcome {
  readonly session: SessionView;
  /** False when requestId matched a live session, which is returned unchanged. */
  readonly created: boolean;
}

export interface UpdateSessionParams {
  /** Replaces the metadata, or with mergeMetadata is merged into it (null removes a key). */
  readonly metadata?: JsonObject;
  readonly mergeMetadata?: boolean;
  readonly accessLevel?: AccessLevel;
  readonly dataSource?: string;
  /** Apply only if the session still has this version (else version_mismatch); never retried. */
  readonly expectedVersion?: number;
}

export interface ListSessionsPage {
  readonly sessions: SessionView[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: ListCursor;
}

export interface EndedSessionsPage {
  readonly sessions: SessionView[];
  /** Where the next page starts; absent on the last page. */
  readonly next?: EndedPosition;
}

export interface DataWriteOutcome {
  readonly version: number;
}

export interface DeleteDataOutcome extends DataWriteOutcome {
  readonly deleted: boolean;
}

export interface ClearDataOutcome extends DataWriteOutcome {
  readonly deletedCount: number;
}

export interface SessionDataListing {
  /** Sorted. */
  readonly keys: string[];
  /** Present only when values were asked for. */
  readonly values?: Map<string, JsonValue>;
}

/** The store's counters, with the duration sum turned into the mean the API reports. */
export interface SessionMetrics extends Omit<SessionCounters, "endedDurationMsSum"> {
  /** Mean (endTime - createTime) of ended sessions; 0 when none has ended. */
  readonly averageDurationMs: number;
}

/** How often a merge is retried when another write got in between its read and its write. */
const MERGE_ATTEMPTS = 20;

export class SessionManager {
  private readonly store: SessionStore;
  private readonly config: Config;
  private readonly cipher: FieldCipher;
  private readonly onSystemEnd: SessionManagerOptions["onSystemEnd"];
  private readonly logger: Logger | undefined;
  private readonly endedArchive: EndedArchive | undefined;
  private readonly readCache: ReadCache | undefined;

  constructor(options: SessionManagerOptions) {
    this.store = options.store;
    this.config = options.config;
    this.cipher = options.cipher ?? KeyedFieldCipher.ephemeral();
    this.onSystemEnd = options.onSystemEnd;
    this.logger = options.logger;
    this.endedArchive = options.endedArchive;
    this.readCache = options.readCache;
    // Every expiry a call of this process performed (scheduler or lazy), once each: audit and metrics.
    this.store.onExpired((expirations) => {
      for (const { record, expiredAt } of expirations) this.onSystemEnd?.("expired", record, expiredAt);
    });
  }

  async create(tenant: string, params: CreateSessionParams, user?: string): Promise<CreateSessionOutcome> {
    // The id is chosen here, not by the store, because the sealed metadata is bound to it.
    const sessionId = this.store.newSessionId?.(tenant, params.userId) ?? randomUUID();
    const text = params.metadata === undefined ? EMPTY_METADATA : this.encodeMetadata(params.metadata);
    const metadata = this.sealMetadata(tenant, sessionId, text);
    // The request id names a key: the store only ever sees its keyed HMACs.
    const names = params.requestId === undefined || params.requestId === "" ? undefined : this.cipher.indexNames(params.requestId, { tenant, kind: "request_id" });
    const requestId = names?.[0] ?? "";
    const requestIdAliases = names === undefined ? [] : names.slice(1);
    const result = await this.store.create({
      tenant,
      sessionId,
      userId: params.userId,
      dataSource: params.dataSource,
      accessLevel: params.accessLevel,
      ttlMs: params.ttlMs ?? this.config.ttl.defaultMs,
      metadata,
      requestId,
      ...(requestIdAliases.length === 0 ? {} : { requestIdAliases }),
      ...(user === undefined ? {} : { guard: { userId: user, level: "read" } }),
    });
    for (const record of result.evicted ?? []) {
      this.readCache?.drop(record.sessionId);
      this.onSystemEnd?.("evicted", record, record.endTime);
    }
    // A retried create answers the session it made before, recording an access.
    if (!result.created) this.readCache?.drop(result.session.sessionId);
    return { session: toSessionView(result.session, this.cipher, { sealed: metadata, text }), created: result.created };
  }

  /** A live session (recording the access), or with includeEnded also the archived state of an ended one. */
  async get(tenant: string, sessionId: string, includeEnded: boolean, user?: string): Promise<SessionView> {
    const guard = guardFor(user, REQUIRED_LEVEL.get);
    const cache = this.readCache;
    // A copy answers a caller acting for a user only where the store's guard would let the get through; anything
    // else reads the store, which answers as it does without copies.
    const copy = cache?.lookup(tenant, sessionId, guard === undefined ? undefined : (view) => view.userId === guard.userId && levelAllows(view.accessLevel, guard.level));
    if (copy !== undefined) return copy;
    const ticket = cache?.reserve(tenant, sessionId);
    try {
      const view = this.view(await this.store.get(tenant, sessionId, guard === undefined ? { touch: true, includeEnded } : { touch: true, includeEnded, guard }));
      cache?.land(ticket, view);
      return view;
    } catch (error) {
      cache?.abandon(ticket, sessionId);
      // Past ARCHIVE_RETENTION (or after Redis lost its data) the durable archive may still have it.
      if (!includeEnded || this.endedArchive === undefined || !(isSessionError(error) && error.kind === "not_found")) throw error;
      const archived = await this.endedArchive.find(tenant, sessionId);
      // Another user's ended session is as absent as an unknown one.
      if (archived === undefined || (user !== undefined && archived.userId !== user)) throw error;
      return this.view(archived);
    }
  }

  /** Whether ended sessions are kept in a durable archive (listEnded works). */
  get hasEndedArchive(): boolean {
    return this.endedArchive !== undefined;
  }

  /** Ended sessions from the durable archive, most recently ended first; a caller acting for a user sees that user's only. */
  async listEnded(tenant: string, requested: EndedFilter, pageSize: number, after?: EndedPosition, user?: string): Promise<EndedSessionsPage> {
    if (this.endedArchive === undefined) throw new Error("listEnded: no ended-session archive configured");
    const filter = ownFilter(requested, user);
    if (filter === "none") return { sessions: [] };
    const page = await this.endedArchive.list(tenant, filter, pageSize, after);
    const sessions = page.sessions.map((record) => this.view(record));
    return page.next === undefined ? { sessions } : { sessions, next: page.next };
  }

  /** A live session without recording an access, or undefined: for watch snapshots. */
  async lookup(tenant: string, sessionId: string): Promise<SessionView | undefined> {
    try {
      return this.view(await this.store.get(tenant, sessionId, { touch: false, includeEnded: false }));
    } catch (error) {
      if (isSessionError(error) && error.kind === "not_found") return undefined;
      throw error;
    }
  }

  async update(tenant: string, sessionId: string, params: UpdateSessionParams, user?: string): Promise<SessionView> {
    const guard = guardFor(user, updateLevel(params));
    const record = await this.writing(sessionId, () =>
      params.mergeMetadata === true && params.metadata !== undefined
        ? this.updateMerging(tenant, sessionId, params.metadata, params, guard)
        : this.store.update(
            tenant,
            sessionId,
            this.patch(params, params.metadata === undefined ? undefined : this.sealMetadata(tenant, sessionId, this.encodeMetadata(params.metadata))),
            params.expectedVersion,
            guard,
          ),
    );
    return this.view(record);
  }

  /** Sets the session to expire ttlMs (default config.ttl.defaultMs) from now. */
  async extend(tenant: string, sessionId: string, ttlMs?: number, user?: string): Promise<SessionView> {
    const record = await this.writing(sessionId, () => this.store.extend(tenant, sessionId, ttlMs ?? this.config.ttl.defaultMs, guardFor(user, REQUIRED_LEVEL.extend)));
    return this.view(record);
  }

  /** Archives the final state (status closed) and removes the session and its data. */
  async close(tenant: string, sessionId: string, user?: string): Promise<SessionView> {
    const record = await this.writing(sessionId, () => this.store.close(tenant, sessionId, guardFor(user, REQUIRED_LEVEL.close)));
    return this.view(record);
  }

  /** Live sessions; a caller acting for a user sees that user's only, whatever the filter says. */
  async list(tenant: string, requested: ListFilter, pageSize: number, after?: ListCursor, user?: string): Promise<ListSessionsPage> {
    const filter = ownFilter(requested, user);
    if (filter === "none") return { sessions: [] };
    const result = await this.store.list(tenant, filter, pageSize, after);
    // One record that does not decode or decrypt is left out and counted; the rest of the page is served.
    const sessions: SessionView[] = [];
    const unreadable = [...(result.unreadable ?? [])];
    for (const record of result.sessions) {
      try {
        sessions.push(this.view(record));
      } catch {
        unreadable.push(record.sessionId);
      }
    }
    for (const sessionId of unreadable) {
      countUnreadable("record");
      this.logger?.error({ tenant, sessionId, kind: "record" }, "unreadable session record left out of a listing");
    }
    return result.next === undefined ? { sessions } : { sessions, next: result.next };
  }

  async setData(tenant: string, sessionId: string, key: string, value: JsonValue, user?: string): Promise<DataWriteOutcome> {
    const text = encodeJson(value, "value");
    const limit = this.config.limits.maxDataValueBytes;
    if (jsonByteLength(text) > limit) {
      throw new SessionError("invalid_argument", `value: must be at most ${limit} bytes as JSON`, "value");
    }
    const sealed = this.cipher.seal(text, { tenant, sessionId, field: dataField(key) });
    const result = await this.writing(sessionId, () => this.store.setData(tenant, sessionId, key, sealed, guardFor(user, REQUIRED_LEVEL.setData)));
    return { version: result.version };
  }

  /** not_found for an absent key as for an unknown session. */
  async getData(tenant: string, sessionId: string, key: string, user?: string): Promise<JsonValue> {
    // A data read records the access time: a copy's would be behind.
    const text = await this.writing(sessionId, () => this.store.getData(tenant, sessionId, key, guardFor(user, REQUIRED_LEVEL.getData)));
    if (text === undefined) {
      // The key name is the caller's own identifier, not a value: fine to name.
      throw new SessionError("not_found", `key ${JSON.stringify(key)} not found`);
    }
    return decodeValue(this.cipher.open(text, { tenant, sessionId, field: dataField(key) }));
  }

  async deleteData(tenant: string, sessionId: string, key: string, user?: string): Promise<DeleteDataOutcome> {
    const result = await this.writing(sessionId, () => this.store.deleteData(tenant, sessionId, key, guardFor(user, REQUIRED_LEVEL.deleteData)));
    // The store logs DATA_CHANGED even when the key was absent: the version changed all the same.
    return { deleted: result.deleted, version: result.version };
  }

  async listData(tenant: string, sessionId: string, includeValues: boolean, user?: string): Promise<SessionDataListing> {
    const entries = await this.writing(sessionId, () => this.store.listData(tenant, sessionId, includeValues, guardFor(user, REQUIRED_LEVEL.listData)));
    const keys = [...entries.keys()];
    if (!includeValues) return { keys };
    const values = new Map<string, JsonValue>();
    for (const [key, text] of entries) values.set(key, decodeValue(this.cipher.open(text, { tenant, sessionId, field: dataField(key) })));
    return { keys, values };
  }

  async clearData(tenant: string, sessionId: string, user?: string): Promise<ClearDataOutcome> {
    const result = await this.writing(sessionId, () => this.store.clearData(tenant, sessionId, guardFor(user, REQUIRED_LEVEL.clearData)));
    // The store does not report which keys it removed; empty dataKeys means "every key".
    return { deletedCount: result.deletedCount, version: result.version };
  }

  /** The id of the newest logged event ("0-0" for an empty log), or of the tenant's newest: where a watch snapshot starts. */
  lastEventId(tenant?: string): Promise<string> {
    return this.store.lastEventId(tenant);
  }

  /** Logged events after `after` (a watch's replay); out_of_range when `after` is past the retention. */
  readEvents(after: string, limit: number): Promise<StoredEvent[]> {
    return this.store.readEvents(after, limit);
  }

  /** Tenant-wide figures: refused to a caller acting for a user (access-policy.ts). */
  async metrics(tenant: string, user?: string): Promise<SessionMetrics> {
    checkMetricsFor(user);
    const counters: SessionCounters = await this.store.counters(tenant);
    const ended = counters.expired + counters.closed;
    return {
      total: counters.total,
      active: counters.active,
      expired: counters.expired,
      closed: counters.closed,
      activeByAccessLevel: { ...counters.activeByAccessLevel },
      activeByDataSource: { ...counters.activeByDataSource },
      averageDurationMs: ended === 0 ? 0 : counters.endedDurationMsSum / ended,
    };
  }

  /**
   * Read, merge, compare-and-set. When another write changed the session
   * between the read and the write, the store rejects the write
   * (version_mismatch) and the merge is redone on the new state, so
   * concurrent merges of different keys never lose one another. With an
   * expected version from the caller there is nothing to retry: the caller
   * asked for exactly that state.
   */
  private async updateMerging(
    tenant: string,
    sessionId: string,
    patchMetadata: JsonObject,
    params: UpdateSessionParams,
    guard: SessionGuard | undefined,
  ): Promise<SessionRecord> {
    const attempts = params.expectedVersion === undefined ? MERGE_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      // The read is guarded too, so another user's session is not_found before any work on it.
      const current = await this.store.get(tenant, sessionId, { touch: false, includeEnded: true, ...(guard === undefined ? {} : { guard }) });
      if (current.status !== "active") {
        throw new SessionError("ended", `session has ended (${current.status})`);
      }
      const expected = params.expectedVersion ?? current.version;
      if (current.version !== expected) {
        throw new SessionError("version_mismatch", `session is at version ${current.version}, not ${expected}`);
      }
      const stored = this.view(current).metadata;
      const metadata = this.sealMetadata(tenant, sessionId, this.encodeMetadata(mergeMetadata(stored, patchMetadata)));
      try {
        return await this.store.update(tenant, sessionId, this.patch(params, metadata), expected, guard);
      } catch (error) {
        if (!(isSessionError(error) && error.kind === "version_mismatch") || attempt >= attempts) throw error;
        // Small random pause so that retrying writers spread out instead of colliding again.
        await sleep(Math.random() * Math.min(2 * attempt, 20));
      }
    }
  }

  /**
   * Runs a write to the session with its copy (read-cache.ts) dropped before
   * the write is sent and again when it is answered: a get that read Redis
   * before the write and landed meanwhile leaves no copy behind it.
   */
  private async writing<T>(sessionId: string, write: () => Promise<T>): Promise<T> {
    const cache = this.readCache;
    if (cache === undefined) return write();
    cache.drop(sessionId);
    try {
      return await write();
    } finally {
      cache.drop(sessionId);
    }
  }

  /**
   * The stored record as callers see it, metadata opened and decoded: the one
   * conversion every reply, listing and watch event goes through.
   */
  view(record: SessionRecord): SessionView {
    return toSessionView(record, this.cipher);
  }

  private sealMetadata(tenant: string, sessionId: string, text: string): string {
    return this.cipher.seal(text, { tenant, sessionId, field: METADATA_FIELD });
  }

  private patch(params: UpdateSessionParams, metadata: string | undefined): SessionPatch {
    return {
      ...(metadata === undefined ? {} : { metadata }),
      ...(params.accessLevel === undefined ? {} : { accessLevel: params.accessLevel }),
      ...(params.dataSource === undefined ? {} : { dataSource: params.dataSource }),
    };
  }

  private encodeMetadata(metadata: JsonObject): string {
    const text = encodeJson(metadata, "metadata");
    const limit = this.config.limits.maxMetadataBytes;
    if (jsonByteLength(text) > limit) {
      throw new SessionError("invalid_argument", `metadata: must be at most ${limit} bytes as JSON`, "metadata");
    }
    return text;
  }
}
