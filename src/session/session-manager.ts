/**
 * The session domain layer: what each RPC does, in terms of the store.
 *
 * The API layer (src/api/validate.ts) checks the format of every request field
 * before calling in here; this layer owns what needs the stored state or the
 * encoded form: JSON encoding and its size limits, the read-merge-write of
 * merged metadata, the default TTL, events, and the expiry sweeper.
 *
 * Methods take the tenant first: tenants are isolated by the store, and the API
 * layer decides which tenant a call acts on.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config/config.js";
import type { ListCursor, ListFilter, SessionCounters, SessionPatch, SessionStore } from "../store/store.js";
import type { SessionEventBus, SessionEventType } from "../streaming/session-event-bus.js";
import { isSessionError, SessionError } from "./errors.js";
import { ExpirySweeper } from "./expiry-sweeper.js";
import { decodeMetadata, decodeValue, EMPTY_METADATA, encodeJson, jsonByteLength, mergeMetadata } from "./json-codec.js";
import type { AccessLevel, SessionRecord } from "./model.js";
import { toSessionView, type SessionView } from "./session-view.js";

export type { SessionView } from "./session-view.js";

export interface SessionManagerOptions {
  readonly store: SessionStore;
  readonly config: Config;
  readonly events: SessionEventBus;
  readonly logger: Logger;
  /** Most sessions one expireDue call archives (default 100). */
  readonly sweepBatchSize?: number;
}

export interface CreateSessionParams {
  readonly userId: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  /** Absent: config.ttl.defaultMs. */
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

export interface SessionMetrics {
  readonly total: number;
  readonly active: number;
  readonly expired: number;
  readonly closed: number;
  readonly activeByAccessLevel: Partial<Record<AccessLevel, number>>;
  readonly activeByDataSource: Record<string, number>;
  /** Mean (endTime - createTime) of ended sessions; 0 when none has ended. */
  readonly averageDurationMs: number;
}

/** How often a merge is retried when another write got in between its read and its write. */
const MERGE_ATTEMPTS = 20;
const DEFAULT_SWEEP_BATCH = 100;

export class SessionManager {
  readonly store: SessionStore;
  readonly config: Config;
  readonly events: SessionEventBus;
  readonly logger: Logger;
  private readonly sweeper: ExpirySweeper;

  constructor(options: SessionManagerOptions) {
    this.store = options.store;
    this.config = options.config;
    this.events = options.events;
    this.logger = options.logger;
    this.sweeper = new ExpirySweeper({
      store: this.store,
      intervalMs: this.config.sweepIntervalMs,
      batchSize: options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH,
      onExpired: (records) => {
        for (const record of records) this.publish("expired", record);
      },
      logger: this.logger.child({ component: "expiry-sweeper" }),
    });
  }

  /** Starts expiring due sessions every config.sweepIntervalMs (an EXPIRED event per session). */
  startSweeper(): void {
    this.sweeper.start();
  }

  /** Stops the sweeper and waits for a sweep in progress. Does not dispose of the store. */
  async stop(): Promise<void> {
    await this.sweeper.stop();
  }

  async create(tenant: string, params: CreateSessionParams): Promise<CreateSessionOutcome> {
    const metadata = params.metadata === undefined ? EMPTY_METADATA : this.encodeMetadata(params.metadata);
    const result = await this.store.create({
      tenant,
      userId: params.userId,
      dataSource: params.dataSource,
      accessLevel: params.accessLevel,
      ttlMs: params.ttlMs ?? this.config.ttl.defaultMs,
      metadata,
      requestId: params.requestId ?? "",
    });
    if (result.created) this.publish("created", result.session);
    return { session: toSessionView(result.session), created: result.created };
  }

  /** A live session (recording the access), or with includeEnded also the archived state of an ended one. */
  async get(tenant: string, sessionId: string, includeEnded: boolean): Promise<SessionView> {
    return toSessionView(await this.store.get(tenant, sessionId, { touch: true, includeEnded }));
  }

  /** A live session without recording an access, or undefined: for watch snapshots. */
  async lookup(tenant: string, sessionId: string): Promise<SessionView | undefined> {
    try {
      return toSessionView(await this.store.get(tenant, sessionId, { touch: false, includeEnded: false }));
    } catch (error) {
      if (isSessionError(error) && error.kind === "not_found") return undefined;
      throw error;
    }
  }

  async update(tenant: string, sessionId: string, params: UpdateSessionParams): Promise<SessionView> {
    const record =
      params.mergeMetadata === true && params.metadata !== undefined
        ? await this.updateMerging(tenant, sessionId, params.metadata, params)
        : await this.store.update(
            tenant,
            sessionId,
            this.patch(params, params.metadata === undefined ? undefined : this.encodeMetadata(params.metadata)),
            params.expectedVersion,
          );
    this.publish("updated", record);
    return toSessionView(record);
  }

  /** Sets the session to expire ttlMs (default config.ttl.defaultMs) from now. */
  async extend(tenant: string, sessionId: string, ttlMs?: number): Promise<SessionView> {
    const record = await this.store.extend(tenant, sessionId, ttlMs ?? this.config.ttl.defaultMs);
    this.publish("extended", record);
    return toSessionView(record);
  }

  /** Archives the final state (status closed) and removes the session and its data. */
  async close(tenant: string, sessionId: string): Promise<SessionView> {
    const record = await this.store.close(tenant, sessionId);
    this.publish("closed", record);
    return toSessionView(record);
  }

  async list(tenant: string, filter: ListFilter, pageSize: number, after?: ListCursor): Promise<ListSessionsPage> {
    const result = await this.store.list(tenant, filter, pageSize, after);
    const sessions = result.sessions.map(toSessionView);
    return result.next === undefined ? { sessions } : { sessions, next: result.next };
  }

  async setData(tenant: string, sessionId: string, key: string, value: JsonValue): Promise<DataWriteOutcome> {
    const text = encodeJson(value, "value");
    const limit = this.config.limits.maxDataValueBytes;
    if (jsonByteLength(text) > limit) {
      throw new SessionError("invalid_argument", `value: must be at most ${limit} bytes as JSON`, "value");
    }
    const result = await this.store.setData(tenant, sessionId, key, text);
    await this.publishDataChanged(tenant, sessionId, [key]);
    return { version: result.version };
  }

  /** not_found for an absent key as for an unknown session. */
  async getData(tenant: string, sessionId: string, key: string): Promise<JsonValue> {
    const text = await this.store.getData(tenant, sessionId, key);
    if (text === undefined) {
      // The key name is the caller's own identifier, not a value: fine to name.
      throw new SessionError("not_found", `key ${JSON.stringify(key)} not found`);
    }
    return decodeValue(text);
  }

  async deleteData(tenant: string, sessionId: string, key: string): Promise<DeleteDataOutcome> {
    const result = await this.store.deleteData(tenant, sessionId, key);
    // Published even when the key was absent: the version changed all the same.
    await this.publishDataChanged(tenant, sessionId, [key]);
    return { deleted: result.deleted, version: result.version };
  }

  async listData(tenant: string, sessionId: string, includeValues: boolean): Promise<SessionDataListing> {
    const entries = await this.store.listData(tenant, sessionId, includeValues);
    const keys = [...entries.keys()];
    if (!includeValues) return { keys };
    const values = new Map<string, JsonValue>();
    for (const [key, text] of entries) values.set(key, decodeValue(text));
    return { keys, values };
  }

  async clearData(tenant: string, sessionId: string): Promise<ClearDataOutcome> {
    const result = await this.store.clearData(tenant, sessionId);
    // The store does not report which keys it removed; empty dataKeys means "every key".
    await this.publishDataChanged(tenant, sessionId, []);
    return { deletedCount: result.deletedCount, version: result.version };
  }

  async metrics(tenant: string): Promise<SessionMetrics> {
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
  private async updateMerging(tenant: string, sessionId: string, patchMetadata: JsonObject, params: UpdateSessionParams): Promise<SessionRecord> {
    const attempts = params.expectedVersion === undefined ? MERGE_ATTEMPTS : 1;
    for (let attempt = 1; ; attempt++) {
      const current = await this.store.get(tenant, sessionId, { touch: false, includeEnded: true });
      if (current.status !== "active") {
        throw new SessionError("ended", `session has ended (${current.status})`);
      }
      const expected = params.expectedVersion ?? current.version;
      if (current.version !== expected) {
        throw new SessionError("version_mismatch", `session is at version ${current.version}, not ${expected}`);
      }
      const metadata = this.encodeMetadata(mergeMetadata(decodeMetadata(current.metadata), patchMetadata));
      try {
        return await this.store.update(tenant, sessionId, this.patch(params, metadata), expected);
      } catch (error) {
        if (!(isSessionError(error) && error.kind === "version_mismatch") || attempt >= attempts) throw error;
        // Small random pause so that retrying writers spread out instead of colliding again.
        await sleep(Math.random() * Math.min(2 * attempt, 20));
      }
    }
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

  private publish(type: SessionEventType, record: SessionRecord, dataKeys: readonly string[] = []): void {
    this.events.publish({ type, session: record, time: Date.now(), dataKeys });
  }

  /**
   * Data writes return only the new version, but an event carries the session
   * (watchers filter on user and data source), so it is read back. That costs
   * a store round trip, so it is skipped while nobody subscribes; the read may
   * see a later state than the write's (this first watch version accepts that).
   */
  private async publishDataChanged(tenant: string, sessionId: string, dataKeys: readonly string[]): Promise<void> {
    if (this.events.subscriberCount === 0) return;
    try {
      const record = await this.store.get(tenant, sessionId, { touch: false, includeEnded: true });
      this.publish("data_changed", record, dataKeys);
    } catch (error) {
      // The write succeeded; failing the RPC now would make the caller retry a done write.
      this.logger.warn({ errName: error instanceof Error ? error.name : typeof error }, "could not read session back for its data_changed event");
    }
  }
}
