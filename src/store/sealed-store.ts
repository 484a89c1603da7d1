/**
 * The store as seen through encryption (FieldCipher.encrypts): wraps either
 * backend so that what names keys never reaches it in the clear, and what
 * Redis holds cannot be served out of place.
 *
 * - User ids and data sources go to the store as keyed HMACs (tokens, see
 *   FieldCipher.indexNames), which name the index keys, counter fields and
 *   due-queue members; the names themselves travel sealed beside them (record
 *   fields, archives, events, the counters' data-source names) and are opened
 *   here. An opened name must hash to the record's token, so a sealed name
 *   copied in from elsewhere is refused.
 * - The record's metadata ciphertext carries a keyed tag (SealedFields.metadataTag)
 *   kept in the record and its archive but never in the event log, so an older
 *   ciphertext copied from the log into the record is refused.
 * - Data key names likewise: the data hash's fields are tokens, each value is
 *   stored as `<sealed key name> <sealed value>`, and events log the sealed name.
 * - Lookups by user, data source or data key try the tokens of every configured key,
 *   so sessions created before a key rotation stay reachable (new ones use
 *   the primary key's token).
 * - A store that places sessions by user (a partitioned Redis layout) places
 *   them by the user's placement under the partition secret, which no key
 *   rotation changes (partition-secret.ts), so a user's sessions stay in one
 *   partition across rotations. openSealedStore opens the secret at start.
 *
 * The per-name work (tokens, sealing, checks) is sealed-names.ts's.
 *
 * A record that fails these checks is unreadable: left out of a listing
 * (counted and logged by the session layer), refused with INTERNAL by every
 * other call (logged here with ids only, counted), skipped in the event log
 * like any entry that does not decode.
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import { DecryptError, type FieldCipher } from "../crypto/field-cipher.js";
import { SessionError } from "../domain/errors.js";
import type { SessionRecord } from "../domain/model.js";
import { problemOf, SealedNames, Unreadable, type WrittenForms } from "./sealed-names.js";
import { openPartitionSecret, UserPlacement, type PartitionSecretCopies } from "./partition-secret.js";
import { PartitionSecretKeeper, type PartitionSecretSplit } from "./partition-secret-keeper.js";
import { countUnreadable } from "../observability/metrics.js";
import {
  checkGuardedCreate,
  type ClearDataResult,
  type CreateSessionInput,
  type CreateSessionResult,
  type DataWriteResult,
  type DeleteDataResult,
  type DueInfo,
  type EventTail,
  type ExpiryListener,
  type GetSessionOptions,
  type ListCursor,
  type ListFilter,
  type ListResult,
  type SessionCounters,
  type SessionGuard,
  type ServerSettingsKeeper,
  type SessionPatch,
  type SessionStore,
  type StoredEvent,
  type StoreProblems,
  type TailEntry,
} from "./store.js";
import { UnreadableListeners, type UnreadableEntry, type UnreadableListener } from "./unreadable.js";

/** T with every field present (an optional one may be undefined): a field added to T later is a compile error where this is built. */
type EveryField<T> = { [K in keyof Required<T>]: T[K] };

/** The store itself when the cipher does not encrypt (behaviour unchanged), else the sealing wrapper (it opens the partition secret on first use). */
export function sealStore(store: SessionStore, cipher: FieldCipher, logger?: Logger): SessionStore {
  return cipher.encrypts ? new SealedStore(store, cipher, logger) : store;
}

/** How the partition secret is kept in Redis once opened (partition-secret-keeper.ts). */
export interface SecretKeeping {
  /** Between checks that Redis still holds it (SECRET_CHECK_INTERVAL_MS when absent). */
  readonly checkIntervalMs?: number;
  /** Where a split from Redis's secret is reported (a readiness condition). */
  readonly split?: PartitionSecretSplit;
}

/** sealStore, with the partition secret opened (or a StartError) before the store is returned. */
export async function openSealedStore(store: SessionStore, cipher: FieldCipher, logger?: Logger, keeping: SecretKeeping = {}): Promise<SessionStore> {
  if (!cipher.encrypts) return store;
  const sealed = new SealedStore(store, cipher, logger, keeping);
  await sealed.openPlacement();
  return sealed;
}

export class SealedStore implements SessionStore {
  readonly kind: string;
  readonly keepServerSettings?: () => Promise<ServerSettingsKeeper>;
  readonly watchReadiness?: (listener: (ready: boolean) => void) => () => void;
  readonly problems?: () => Promise<StoreProblems>;
  readonly newSessionId?: (tenant: string, userId: string) => string;
  private readonly unreadable = new UnreadableListeners();
  private readonly names: SealedNames;
  /** The inner store's partition secret copies; undefined: it does not place sessions by user. */
  private readonly secretCopies: PartitionSecretCopies | undefined;
  private placement: UserPlacement | undefined;
  private placementOpening: Promise<void> | undefined;
  private keeper: PartitionSecretKeeper | undefined;
  private disposed = false;

  constructor(
    private readonly inner: SessionStore,
    private readonly cipher: FieldCipher,
    private readonly logger?: Logger,
    private readonly keeping: SecretKeeping = {},
  ) {
    this.names = new SealedNames(cipher);
    this.kind = inner.kind;
    const { keepServerSettings, watchReadiness, problems } = inner;
    if (keepServerSettings !== undefined) this.keepServerSettings = keepServerSettings.bind(inner);
    if (watchReadiness !== undefined) this.watchReadiness = watchReadiness.bind(inner);
    if (problems !== undefined) this.problems = problems.bind(inner);
    this.secretCopies = inner.partitionSecretCopies?.();
    // A store that places sessions by user (a partitioned Redis layout) sees only the user's placement.
    const { newSessionId } = inner;
    if (newSessionId !== undefined) this.newSessionId = (tenant, userId) => newSessionId.call(inner, tenant, this.placementOf(tenant, userId) ?? this.names.token(tenant, "user", userId));
  }

  /** Opens the partition secret, once (a no-op where the store does not place by user). */
  openPlacement(): Promise<void> {
    const copies = this.secretCopies;
    if (copies === undefined || this.placement !== undefined) return Promise.resolve();
    this.placementOpening ??= openPartitionSecret(copies, this.cipher).then(
      (held) => {
        this.placement = new UserPlacement(held.secret);
        if (this.disposed) return;
        this.keeper = new PartitionSecretKeeper(copies, this.cipher, held, {
          ...(this.keeping.checkIntervalMs === undefined ? {} : { intervalMs: this.keeping.checkIntervalMs }),
          logger: this.logger,
          watchReadiness: this.watchReadiness,
          split: this.keeping.split,
        });
      },
      (error: unknown) => {
        this.placementOpening = undefined;
        throw error;
      },
    );
    return this.placementOpening;
  }

  /** The user's placement under the partition secret; undefined where the store does not place by user. */
  private placementOf(tenant: string, userId: string): string | undefined {
    if (this.secretCopies === undefined) return undefined;
    if (this.placement === undefined) throw new Error("the partition secret is not open yet: use openSealedStore (or await openPlacement())");
    // Placed by this secret, a user's sessions would not be where every other process looks (partition-secret-keeper.ts).
    if (this.keeper?.split.split === true) {
      throw new SessionError("unavailable", "this process's partition secret is not the one in Redis (Redis lost its data): the process must be restarted");
    }
    return this.placement.of(tenant, userId);
  }

  async create(input: CreateSessionInput): Promise<CreateSessionResult> {
    const { tenant } = input;
    if (this.secretCopies !== undefined && this.placement === undefined) await this.openPlacement();
    const userPlacement = this.placementOf(tenant, input.userId);
    const sessionId = input.sessionId ?? this.newSessionId?.(tenant, input.userId) ?? randomUUID();
    // Names are compared in the clear first: the store only sees tokens.
    checkGuardedCreate(input);
    const guard = this.names.guard(tenant, input.guard);
    const user = this.names.sent(tenant, "user", input.userId);
    const dataSource = this.names.sent(tenant, "data_source", input.dataSource);
    const metadataTag = this.names.metadataTag(tenant, sessionId, input.metadata);
    // Every field written out rather than `{ ...input, sealed }`: V8 gives an object spread and then given a field it
    // lacked a map of its own, a new one per create, which made every read of it in the store a megamorphic lookup.
    const sent: EveryField<CreateSessionInput> = {
      tenant,
      sessionId,
      userId: user.token,
      userPlacement,
      dataSource: dataSource.token,
      accessLevel: input.accessLevel,
      ttlMs: input.ttlMs,
      metadata: input.metadata,
      requestId: input.requestId,
      requestIdAliases: input.requestIdAliases,
      guard,
      sealed: { user: user.sealed, dataSource: dataSource.sealed, metadataTag },
    };
    const result = await this.inner.create(sent);
    const session = this.open(result.session, { tenant, sessionId, user, dataSource, metadata: { text: input.metadata, tag: metadataTag } });
    const evicted = result.evicted?.map((r) => this.open(r));
    return evicted === undefined ? { created: result.created, session } : { created: result.created, session, evicted };
  }

  async get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord> {
    // Without a guard there is no name to replace: the options go on as they are.
    const guard = options.guard === undefined ? undefined : this.names.guard(tenant, options.guard);
    return this.open(await this.inner.get(tenant, sessionId, guard === undefined ? options : { ...options, guard }));
  }

  async update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number, guard?: SessionGuard): Promise<SessionRecord> {
    const { metadata } = patch;
    const dataSource = patch.dataSource === undefined ? undefined : this.names.sent(tenant, "data_source", patch.dataSource);
    const metadataTag = metadata === undefined ? undefined : this.names.metadataTag(tenant, sessionId, metadata);
    const stored: SessionPatch = {
      ...patch,
      ...(dataSource === undefined ? {} : { dataSource: dataSource.token }),
      sealed: {
        ...(dataSource === undefined ? {} : { dataSource: dataSource.sealed }),
        ...(metadataTag === undefined ? {} : { metadataTag }),
      },
    };
    const record = await this.inner.update(tenant, sessionId, stored, expectedVersion, this.names.guard(tenant, guard));
    return this.open(record, {
      tenant,
      sessionId,
      ...(dataSource === undefined ? {} : { dataSource }),
      ...(metadata === undefined || metadataTag === undefined ? {} : { metadata: { text: metadata, tag: metadataTag } }),
    });
  }

  async extend(tenant: string, sessionId: string, ttlMs: number, guard?: SessionGuard): Promise<SessionRecord> {
    return this.open(await this.inner.extend(tenant, sessionId, ttlMs, this.names.guard(tenant, guard)));
  }

  async close(tenant: string, sessionId: string, guard?: SessionGuard): Promise<SessionRecord> {
    return this.open(await this.inner.close(tenant, sessionId, this.names.guard(tenant, guard)));
  }

  /**
   * One listing per combination of the filter's tokens (one, unless a rotated
   * key is still configured), merged in listing order: each reads about one
   * page, so the work stays bounded by the page.
   */
  async list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult> {
    if (filter.userId !== undefined && this.secretCopies !== undefined && this.placement === undefined) await this.openPlacement();
    const userPlacement = filter.userId === undefined ? undefined : this.placementOf(tenant, filter.userId);
    const placed = userPlacement === undefined ? {} : { userPlacement };
    const users = filter.userId === undefined ? [undefined] : this.names.tokens(tenant, "user", filter.userId);
    const sources = filter.dataSource === undefined ? [undefined] : this.names.tokens(tenant, "data_source", filter.dataSource);
    const filters: ListFilter[] = users.flatMap((userId) =>
      sources.map((dataSource) => ({ ...(userId === undefined ? {} : { userId, ...placed }), ...(dataSource === undefined ? {} : { dataSource }) })),
    );
    const pages = await Promise.all(filters.map((f) => this.inner.list(tenant, f, limit, after)));
    const unreadable = pages.flatMap((p) => p.unreadable ?? []);
    const sessions: SessionRecord[] = [];
    for (const record of pages.flatMap((p) => p.sessions)) {
      try {
        sessions.push(this.names.check(record));
      } catch {
        unreadable.push(record.sessionId);
      }
    }
    if (pages.length === 1) {
      const next = pages[0]?.next;
      return { sessions, ...(next === undefined ? {} : { next }), ...(unreadable.length === 0 ? {} : { unreadable }) };
    }
    sessions.sort((a, b) => a.expireTime - b.expireTime || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
    const page = sessions.slice(0, limit);
    const last = page[page.length - 1];
    const more = sessions.length > limit || pages.some((p) => p.next !== undefined);
    const next = more && last !== undefined ? { expireTime: last.expireTime, sessionId: last.sessionId } : undefined;
    return { sessions: page, ...(next === undefined ? {} : { next }), ...(unreadable.length === 0 ? {} : { unreadable }) };
  }

  /**
   * The key goes in as its token (older keys' tokens as aliases, removed by
   * the write); the value as `<sealed key name> <value>` (see loggedKeyOf),
   * and the event logs the sealed name.
   */
  setData(tenant: string, sessionId: string, key: string, value: string, guard?: SessionGuard): Promise<DataWriteResult> {
    const { token, forms } = this.dataKey(tenant, key);
    return this.inner.setData(tenant, sessionId, token, `${forms.loggedKey} ${value}`, this.names.guard(tenant, guard), forms);
  }

  /** Under the token of each configured key in turn (one, unless a rotated key is still configured). */
  async getData(tenant: string, sessionId: string, key: string, guard?: SessionGuard): Promise<string | undefined> {
    const storedGuard = this.names.guard(tenant, guard);
    for (const token of this.names.tokens(tenant, "data_key", key)) {
      const stored = await this.inner.getData(tenant, sessionId, token, storedGuard);
      if (stored !== undefined) return this.dataEntry(tenant, sessionId, token, stored).value;
    }
    return undefined;
  }

  deleteData(tenant: string, sessionId: string, key: string, guard?: SessionGuard): Promise<DeleteDataResult> {
    const { token, forms } = this.dataKey(tenant, key);
    return this.inner.deleteData(tenant, sessionId, token, this.names.guard(tenant, guard), forms);
  }

  /** Values are always read (they carry the key names); a key stored under two tokens (a rotation) shows once, the primary's. */
  async listData(tenant: string, sessionId: string, includeValues: boolean, guard?: SessionGuard): Promise<Map<string, string>> {
    const stored = await this.inner.listData(tenant, sessionId, true, this.names.guard(tenant, guard));
    const entries = new Map<string, { value: string; primary: boolean }>();
    for (const [token, raw] of stored) {
      const { name, value } = this.dataEntry(tenant, sessionId, token, raw);
      const primary = this.names.token(tenant, "data_key", name) === token;
      if (!entries.has(name) || primary) entries.set(name, { value, primary });
    }
    const out = new Map<string, string>();
    for (const name of [...entries.keys()].sort()) out.set(name, includeValues ? (entries.get(name)?.value ?? "") : "");
    return out;
  }

  clearData(tenant: string, sessionId: string, guard?: SessionGuard): Promise<ClearDataResult> {
    return this.inner.clearData(tenant, sessionId, this.names.guard(tenant, guard));
  }

  /** Data-source gauges by name: the store keys them by token and keeps each token's sealed name. */
  async counters(tenant: string): Promise<SessionCounters> {
    const { dataSourceNames, activeByDataSource, ...rest } = await this.inner.counters(tenant);
    const byName: Record<string, number> = {};
    for (const [token, n] of Object.entries(activeByDataSource)) {
      const sealed = dataSourceNames?.[token];
      let name: string | undefined;
      try {
        name = sealed === undefined ? this.names.legacyName(token) : this.names.openName(tenant, "data_source", sealed, token);
      } catch {
        name = undefined;
      }
      if (name === undefined) {
        // The gauge still counts in `active`; only its name is lost.
        this.reportRecord(tenant, undefined, "a data-source counter has no readable name");
        continue;
      }
      byName[name] = (byName[name] ?? 0) + n;
    }
    return { ...rest, activeByDataSource: byName };
  }

  async expireDue(limit: number): Promise<SessionRecord[]> {
    return this.openAll(await this.inner.expireDue(limit));
  }

  nextDue(): Promise<DueInfo> {
    return this.inner.nextDue();
  }

  waitDue(until: number, signal: AbortSignal): Promise<boolean> {
    return this.inner.waitDue(until, signal);
  }

  lastEventId(tenant?: string): Promise<string> {
    return this.inner.lastEventId(tenant);
  }

  async readEvents(after: string, limit: number): Promise<StoredEvent[]> {
    return this.openEvents(await this.inner.readEvents(after, limit));
  }

  openEventTail(): EventTail {
    const tail = this.inner.openEventTail();
    return {
      read: async (after, limit, blockMs) => this.openEvents(await tail.read(after, limit, blockMs)),
      ...(tail.readEntries === undefined ? {} : { readEntries: this.openedEntries(tail.readEntries.bind(tail)) }),
      close: () => tail.close(),
    };
  }

  onUnreadableEvent(listener: UnreadableListener): () => void {
    const removeInner = this.inner.onUnreadableEvent(listener);
    const removeOwn = this.unreadable.add(listener);
    return () => {
      removeInner();
      removeOwn();
    };
  }

  onExpired(listener: ExpiryListener): () => void {
    return this.inner.onExpired((expirations) => {
      const opened = expirations.flatMap((e) => {
        try {
          return [{ ...e, record: this.names.check(e.record) }];
        } catch (error) {
          this.reportRecord(e.record.tenant, e.record.sessionId, problemOf(error));
          return [];
        }
      });
      if (opened.length > 0) listener(opened);
    });
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  dispose(): Promise<void> {
    this.disposed = true;
    this.keeper?.stop();
    return this.inner.dispose();
  }

  /** A data key's primary token, with its sealed name and other tokens. */
  private dataKey(tenant: string, key: string): { token: string; forms: { loggedKey: string; aliases: readonly string[] } } {
    const [token = key, ...aliases] = this.names.tokens(tenant, "data_key", key);
    return { token, forms: { loggedKey: this.names.sealName(tenant, "data_key", key), aliases } };
  }

  /** A stored data entry's key name and value; a name that does not open is refused (INTERNAL, logged, counted). */
  private dataEntry(tenant: string, sessionId: string, token: string, stored: string): { name: string; value: string } {
    try {
      return this.names.dataEntry(tenant, token, stored);
    } catch (error) {
      if (!(error instanceof Unreadable) && !(error instanceof DecryptError)) throw error;
      this.reportRecord(tenant, sessionId, problemOf(error));
      throw new SessionError("internal", `session ${sessionId}: a stored data key failed an integrity check and was not served`);
    }
  }

  /** check() for a record one call returns (`written`: what that call sent): an unreadable one is logged, counted and refused with INTERNAL. */
  private open(record: SessionRecord, written?: WrittenForms): SessionRecord {
    try {
      return this.names.check(record, true, written);
    } catch (error) {
      if (!(error instanceof Unreadable) && !(error instanceof DecryptError)) throw error;
      this.reportRecord(record.tenant, record.sessionId, problemOf(error));
      throw new SessionError("internal", `session ${record.sessionId}: its stored record failed an integrity check and was not served`);
    }
  }

  private openAll(records: readonly SessionRecord[]): SessionRecord[] {
    return records.flatMap((r) => {
      try {
        return [this.names.check(r)];
      } catch (error) {
        this.reportRecord(r.tenant, r.sessionId, problemOf(error));
        return [];
      }
    });
  }

  private reportRecord(tenant: string, sessionId: string | undefined, problem: string): void {
    countUnreadable("record");
    this.logger?.error({ tenant, ...(sessionId === undefined ? {} : { sessionId }), kind: "record", problem }, "unreadable session record refused");
  }

  /** A tail's readEntries whose entries' events are opened when asked for (openEvent). */
  private openedEntries(read: NonNullable<EventTail["readEntries"]>): NonNullable<EventTail["readEntries"]> {
    const open = (entry: TailEntry): StoredEvent | undefined => this.openEvent(entry);
    return async (after, limit, blockMs) => (await read(after, limit, blockMs)).map((entry) => new OpenedEntry(entry, open));
  }

  /** The entry's event with its names opened; undefined (reported as unreadable) when they do not open. */
  private openEvent(entry: TailEntry): StoredEvent | undefined {
    const event = entry.event();
    if (event === undefined) return undefined;
    try {
      return this.names.event(event);
    } catch (error) {
      this.unreadable.notify([{ id: event.id, tenant: event.session.tenant, sessionId: event.session.sessionId, problem: problemOf(error) }]);
      return undefined;
    }
  }

  /** Events whose names open; the others are reported as unreadable entries (skipped, like entries that do not decode). */
  private openEvents(events: readonly StoredEvent[]): StoredEvent[] {
    const out: StoredEvent[] = [];
    const bad: UnreadableEntry[] = [];
    for (const event of events) {
      try {
        out.push(this.names.event(event));
      } catch (error) {
        bad.push({ id: event.id, tenant: event.session.tenant, sessionId: event.session.sessionId, problem: problemOf(error) });
      }
    }
    if (bad.length > 0) this.unreadable.notify(bad);
    return out;
  }
}

/** A tail entry whose event is opened (SealedStore.openEvent) when asked for; one class, no closure per entry. */
class OpenedEntry implements TailEntry {
  readonly id: string;
  readonly type: TailEntry["type"];
  readonly tenant: string;
  readonly sessionId: string;
  readonly expireTime: number;

  constructor(
    private readonly entry: TailEntry,
    private readonly open: (entry: TailEntry) => StoredEvent | undefined,
  ) {
    this.id = entry.id;
    this.type = entry.type;
    this.tenant = entry.tenant;
    this.sessionId = entry.sessionId;
    this.expireTime = entry.expireTime;
  }

  event(): StoredEvent | undefined {
    return this.open(this.entry);
  }
}
