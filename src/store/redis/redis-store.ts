/**
 * SessionStore on Redis. Every write is one Lua script (see lua/), so each
 * operation is atomic, takes its time from Redis TIME, and behaves identically
 * whichever process runs it. Reads that need no logic (counters) are plain
 * commands. The connections and their readiness live in connections.ts.
 *
 * Failure model: every call has one deadline (commandTimeoutMs). Commands are
 * never queued while Redis is unreachable and never replayed after a
 * reconnect (see connections.ts), so a caller
 * told "unavailable" is not surprised later by a write that happened anyway
 * (unless the write reached Redis before the connection broke, which no client
 * can tell). A call made while disconnected waits for the reconnect until its
 * deadline, then rejects with SessionError("unavailable"). ioredis keeps
 * reconnecting in the background, so the store recovers by itself.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Cluster, type ChainableCommander, type Redis } from "ioredis";
import type { Logger } from "pino";
import { isSessionError, SessionError } from "../../domain/errors.js";
import type { SessionRecord } from "../../domain/model.js";
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
  SessionGuard,
  DataKeyForms,
  ServerSettingsKeeper,
  SessionPatch,
  SessionStore,
  StoredEvent,
  StoreLimits,
  StoreProblems,
} from "../store.js";
import { checkGuardedCreate, EVENT_LOG_RESET_MESSAGE, requestIdKey, resolveStoreLimits, type ResolvedStoreLimits } from "../store.js";
import { compareEventIds, eventIdTime, maxEventId, parseCursor, ZERO_EVENT_ID } from "../event-id.js";
import { decodeStreamBatch, decodeStreamHeads, entryGeneration } from "./event-codec.js";
import { UnreadableListeners, type UnreadableEntry, type UnreadableListener } from "../unreadable.js";
import { keepServerSettings } from "./server-settings.js";
import { withinDeadline } from "../../observability/loop-aware-deadline.js";
import { waitClock, waitedSince } from "../../observability/loop-idle.js";
import { scriptError, toSessionError } from "./errors.js";
import { classifyFailure, deadlineExceeded, isOutOfMemory, isSlotInMotion, STORE_FULL_MESSAGE } from "./call-outcome.js";
import { dueKey, dueWakeKey, encodeTenant, eventLogKey, generationKey, indexMember, Partitioning, RedisKeys, waitAdvanceKey } from "./keys.js";
import { redisPartitionSecretCopies } from "./partition-secret-copies.js";
import type { PartitionSecretCopies } from "../partition-secret.js";
import { DueHeads } from "./due-heads.js";
import { MergedLogReader, type MergedPage, type PartitionRead, type PartitionRequest } from "./merged-log.js";
import { PartitionWake } from "./partition-wake.js";
import { createdRecord, decodeListedRecords, decodeLiveRecord, decodeRecord, decodeRecords, RECORD_WIDTH } from "./record-codec.js";
import { loneCallArguments, REPLY_HEADER_WIDTH, scriptLibrary, type ScriptLibrary, type ScriptName } from "./scripts.js";
import { ScriptLibraryCaller, type ScriptArg } from "./script-library.js";
import { traceScript } from "./script-tracing.js";
import { FcallBatcher, type FcallBatchBounds } from "./fcall-batcher.js";
import { ExpiryListeners } from "../expiry-listeners.js";
import { clusterPrimaryFor, RedisConnections, type RedisClusterTarget, type RedisCommandConnection, type RedisConnectionName, type RedisTarget } from "./connections.js";
import { ReplicaWait, type WriteMark } from "./replica-wait.js";
import { CLAIM_SLACK_MS, createWithClaim } from "./request-claims.js";
import { RedisMemoryState } from "./memory-state.js";

export type { RedisClusterTarget, RedisCommandConnection, RedisConnectionName } from "./connections.js";

/** Where Redis is (a URL, or Sentinel: connections.ts) and how the store uses it. */
export type RedisStoreOptions = RedisTarget & {
  /** Prefix of every key (DEFAULT_KEY_PREFIX in keys.ts is "sd:"). */
  readonly keyPrefix: string;
  /** A Redis Cluster to run on instead of `url` (REDIS_CLUSTER_NODES); needs partitions > 1. */
  readonly cluster?: RedisClusterTarget;
  /** Partitions of the key layout (keys.ts; REDIS_PARTITIONS): fixed for the life of a deployment. Default 1. */
  readonly partitions?: number;
  readonly limits: StoreLimits;
  /** Deadline of one store call, including waiting for a reconnect. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger;
  /**
   * Called with every Redis connection the store opens (the command
   * connection at construction, the event reader when it opens), before it
   * can emit any event, with a name for it ("store", "events"). The app uses it to count errors and
   * reconnects (metrics), so the store itself knows nothing of observability.
   */
  readonly onConnection?: (client: RedisCommandConnection, name: RedisConnectionName) => void;
  /** Called when Redis was out of memory and a close kept a shortened archive (for a metric). */
  readonly onArchiveShortened?: () => void;
  /** REDIS_WAIT_REPLICAS and REDIS_WAIT_TIMEOUT: confirm each acknowledged write on replicas (replica-wait.ts); absent or 0: no WAIT. */
  readonly replicaWait?: { readonly replicas: number; readonly timeoutMs: number } | undefined;
  /** How many calls and bytes one FCALL carries (fcall-batcher.ts); default DEFAULT_FCALL_BATCH_BOUNDS. */
  readonly batchBounds?: FcallBatchBounds;
};

/**
 * With several partitions the tail reads every partition's log at most this
 * often (one script per partition per round): under a steady stream of events
 * the added delivery latency, against that load. An idle tail waits on
 * blocking reads instead (partition-wake.ts) and reads at once when woken.
 */
const MERGED_ROUND_MS = 10;
/** Rounds a merged read waits (1 ms each) for a partition's clock to pass entries it holds back. */
const MERGED_CLOCK_ROUNDS = 200;


export class RedisStore implements SessionStore {
  readonly kind = "redis";
  private readonly connections: RedisConnections;
  /** The shared command connection (connections.command). */
  private readonly redis: RedisCommandConnection;
  /** Where the store's connection goes, for trace attributes. */
  private readonly server: { host: string; port: number } | undefined;
  private readonly library: ScriptLibrary;
  private readonly functions: ScriptLibraryCaller;
  /** Sends the calls of a script to a partition made in one turn as one FCALL (fcall-batcher.ts). */
  private readonly batcher: FcallBatcher;
  private readonly timeoutMs: number;
  private readonly limits: ResolvedStoreLimits;
  private readonly header: readonly ScriptArg[];
  /** sharedArguments, made on first use. */
  private readonly shared: (readonly ScriptArg[] | undefined)[] = [];
  private readonly prefix: string;
  private readonly partitions: Partitioning;
  /** Per partition: the key every script of it declares (KEYS[1]: its hash slot) and its tag. */
  private readonly anchors: readonly string[];
  /**
   * With several partitions: every partition's log generation exists before
   * this store writes (see ensureGenerations).
   */
  private generationsReady: Promise<void> | undefined;
  /** generationsReady has resolved: calls need not wait for it (one turn of the event loop each). */
  private generationsMade = false;
  /** The due queues' heads as last read (several partitions, see due-heads.ts). */
  private readonly dueHeads: DueHeads;
  /** Per partition, the last due wake-up's id as read with its head ("0-0": none yet): where waitDue's wait starts. */
  private readonly dueWakeIds: string[];
  /** Blocking reads of the due wake-ups (waitDue), opened by the first wait. */
  private dueWake: PartitionWake | undefined;
  /** Where the next expireDue starts, so that every partition gets its turn. */
  private nextExpiryPartition = 0;
  private readonly logger: Logger | undefined;
  private readonly expiryListeners = new ExpiryListeners();
  private readonly unreadableListeners = new UnreadableListeners();
  private readonly onArchiveShortened: RedisStoreOptions["onArchiveShortened"];
  /** Eviction policy and memory state of the server, for readiness and the start check. */
  private readonly memory = new RedisMemoryState();
  /** Confirms acknowledged writes on replicas; undefined: REDIS_WAIT_REPLICAS is 0. */
  private readonly replicaWait: ReplicaWait | undefined;
  /** Per tenant: the live sessions and data sources of each partition as last read, and when (partitionCounts). */
  private readonly tenantCounts = new Map<string, PartitionCounts>();

  constructor(options: RedisStoreOptions) {
    this.timeoutMs = options.commandTimeoutMs;
    this.prefix = options.keyPrefix;
    this.partitions = new Partitioning(options.partitions ?? 1);
    this.dueHeads = new DueHeads(this.partitions.count);
    this.dueWakeIds = new Array<string>(this.partitions.count).fill("0-0");
    this.anchors = this.partitions.tags.map((tag) => generationKey(options.keyPrefix, tag));
    this.logger = options.logger;
    const limits = resolveStoreLimits(options.limits);
    this.limits = limits;
    this.header = [
      limits.expiryGraceMs,
      limits.archiveRetentionMs,
      limits.maxDataKeys,
      limits.eventRetentionCount,
      limits.eventRetentionMs,
    ];
    if (options.cluster !== undefined && this.partitions.count < 2) throw new Error("a Redis Cluster needs at least 2 partitions (keys.ts)");
    this.connections = new RedisConnections({
      ...(options.sentinel === undefined ? { url: options.url } : { sentinel: options.sentinel }),
      cluster: options.cluster,
      commandTimeoutMs: options.commandTimeoutMs,
      logger: options.logger,
      onConnection: options.onConnection,
    });
    this.redis = this.connections.command;
    const seed = options.cluster?.nodes[0];
    // Through Sentinel the primary changes under the connection: no fixed address to name in traces.
    this.server =
      seed ?? (this.redis instanceof Cluster || options.sentinel !== undefined ? undefined : { host: this.redis.options.host ?? "127.0.0.1", port: this.redis.options.port ?? 6379 });
    this.onArchiveShortened = options.onArchiveShortened;
    const wait = options.replicaWait;
    const redis = this.redis;
    this.replicaWait =
      wait === undefined || wait.replicas <= 0
        ? undefined
        : new ReplicaWait(
            {
              replicas: wait.replicas,
              timeoutMs: wait.timeoutMs,
              slackMs: options.commandTimeoutMs,
              advanceChannel: `${options.keyPrefix}wait`,
              ...(redis instanceof Cluster ? { advanceWrite: this.clusterAdvanceWrite() } : {}),
            },
            // One primary: every write goes over the command connection; a cluster: over the slot's primary.
            redis instanceof Cluster ? clusterPrimaryFor(redis) : () => redis,
          );

    this.library = scriptLibrary();
    this.functions = new ScriptLibraryCaller(this.redis, this.library.source);
    this.batcher = new FcallBatcher(this.functions, options.batchBounds);
  }

  /**
   * REDIS_WAIT_REPLICAS on a cluster: a replicated write in the partition of
   * a mark's key (a partition anchor), so a WAIT covers what that primary had.
   */
  private clusterAdvanceWrite(): (redis: Redis, anchor: string) => Promise<unknown> {
    const byAnchor = new Map(this.partitions.tags.map((tag, i) => [this.anchors[i] as string, waitAdvanceKey(this.prefix, tag)]));
    return (redis, anchor) => {
      const key = byAnchor.get(anchor);
      return key === undefined ? Promise.reject(new Error("not a partition anchor")) : redis.set(key, "1", "PX", 1000);
    };
  }

  async create(input: CreateSessionInput): Promise<CreateSessionResult> {
    checkGuardedCreate(input);
    const placement = input.userPlacement ?? input.userId;
    const partition = this.partitions.ofUser(input.tenant, placement);
    const sessionId = input.sessionId ?? this.newSessionId(input.tenant, placement);
    if (this.partitions.ofSession(sessionId) !== partition) throw new Error("the session id is not of its user's partition: take it from newSessionId");
    // Indexes hold a session id as its 16 bytes (lua/indexes.ts).
    if (!SESSION_ID.test(sessionId)) throw new Error("the session id is not a lowercase UUID: take it from newSessionId");
    // Without tenant caps to share between partitions (the usual case) no await: one microtask less per create.
    const caps = this.capsWithoutCounts(input.dataSource) ?? (await this.tenantCapsLeft(input.tenant, partition, input.dataSource));
    const requestId = requestIdKey(input);
    const aliases = (input.requestIdAliases ?? []).map((alias) => requestIdKey({ requestId: alias, ...(input.guard === undefined ? {} : { guard: input.guard }) }));
    // A guarded request id is the user's (requestIdKey), so it lives in the user's partition; an unguarded one is claimed in its own.
    const claimed = this.partitions.count > 1 && input.guard === undefined && requestId !== "";
    // The clock of the create script that made the session: its record follows from it and what was sent.
    let madeAt = 0;
    const script = (claimEnd: string): Promise<{ reply: string[]; now: number }> =>
      this.runScript(
        "create",
        partition,
        input.tenant,
        [
          sessionId,
          input.userId,
          input.dataSource,
          input.accessLevel,
          input.ttlMs,
          input.metadata,
          requestId,
          createCaps(this.limits.maxSessionsPerUser, this.limits.sessionsPerUserPolicy, caps),
          input.sealed?.user ?? "",
          input.sealed?.dataSource ?? "",
          input.sealed?.metadataTag ?? "",
          claimEnd,
          // Made here rather than in the script, where it costs Redis more than any other step of a create.
          indexMember(sessionId),
          ...aliases,
        ],
        input.guard,
      );
    let reply: string[];
    if (claimed) {
      const run = async (claimEnd: string): Promise<string[]> => {
        const { reply: made, now } = await script(claimEnd);
        madeAt = now;
        return made;
      };
      reply = await createWithClaim({
        partitions: this.partitions,
        tenant: input.tenant,
        sessionId,
        names: [requestId, ...aliases],
        ttlMs: input.ttlMs,
        timeoutMs: this.timeoutMs,
        claim: async (p, args) => (await this.script("claim", p, input.tenant, args)).slice(1),
        create: run,
      });
    } else {
      // The usual case: the script's reply awaited directly, without run's own async step.
      const made = await script("");
      madeAt = made.now;
      reply = made.reply;
    }
    // A new session's reply is its sealed data-source name, then the records closed to make room for it;
    // an earlier create's session comes whole (lua/create.ts).
    const created = reply[1] === "1";
    const session = created ? createdRecord(input, sessionId, madeAt, reply[2] ?? "") : decodeRecord(reply, 2);
    // The create can have added the earliest member of its partition's due queue (at most the session's expire time).
    this.dueHeads.lower(partition, session.expireTime);
    const evicted = created ? decodeRecords(reply, 3) : [];
    return evicted.length === 0 ? { created, session } : { created, session, evicted };
  }

  /**
   * The tenant caps for a script in `partition` (a script sees only its own
   * slot), from the live counts of every partition: MAX_SESSIONS_PER_TENANT
   * less the other partitions' live sessions, and MAX_DATA_SOURCES_PER_TENANT
   * less the live data sources found only in other partitions (or the cap
   * itself when `dataSource` is live elsewhere already); -1 when nothing is
   * left, 0 for no cap. Concurrent creates in different partitions can each
   * miss the others' writes: README "Running on Redis Cluster" says how far
   * over a cap a tenant can get.
   */
  private async tenantCapsLeft(tenant: string, partition: number, dataSource: string | undefined): Promise<TenantCaps> {
    const without = this.capsWithoutCounts(dataSource);
    if (without !== undefined) return without;
    const { maxSessionsPerTenant: sessionCap, maxDataSourcesPerTenant: sourceCap } = this.limits;
    const sources = dataSource === undefined ? 0 : sourceCap;
    const counts = await this.partitionCounts(tenant);
    const others = (of: readonly number[]): number => of.reduce((sum, n, p) => (p === partition ? sum : sum + n), 0);
    const left = (n: number): number => (n > 0 ? n : -1);
    return {
      sessions: sessionCap <= 0 ? sessionCap : left(sessionCap - others(counts.active)),
      sources: sources <= 0 ? sources : await this.sourceCapLeft(tenant, partition, dataSource as string, counts.sources),
    };
  }

  /** The caps as they are when no partition's counts are needed (no cap, or one partition); undefined when they are. */
  private capsWithoutCounts(dataSource: string | undefined): TenantCaps | undefined {
    const { maxSessionsPerTenant: sessionCap, maxDataSourcesPerTenant: sourceCap } = this.limits;
    const sources = dataSource === undefined ? 0 : sourceCap;
    return (sessionCap <= 0 && sources <= 0) || this.partitions.count === 1 ? { sessions: sessionCap, sources } : undefined;
  }

  /** See tenantCapsLeft. Reads the data-source names of every partition only when the per-partition counts cannot rule out the cap. */
  private async sourceCapLeft(tenant: string, partition: number, dataSource: string, counts: readonly number[]): Promise<number> {
    const cap = this.limits.maxDataSourcesPerTenant;
    // The distinct count is at most the sum of the partitions' counts.
    if (counts.reduce((a, b) => a + b, 0) + 1 <= cap) return cap;
    const keys = new RedisKeys(this.prefix, tenant, this.partitions);
    const names = await Promise.all(
      this.allPartitions().map(async (p) => new Set((await this.call(() => this.redis.hkeys(keys.counters(p)))).filter((f) => f.startsWith("s:")))),
    );
    const own = names[partition] as Set<string>;
    const field = `s:${dataSource}`;
    const elsewhere = new Set<string>();
    for (const [p, set] of names.entries()) if (p !== partition) for (const f of set) if (!own.has(f)) elsewhere.add(f);
    if (elsewhere.has(field)) return cap;
    const left = cap - elsewhere.size;
    return left > 0 ? left : -1;
  }

  /**
   * Live sessions and data sources of each of a tenant's partitions (one
   * HMGET each, in parallel), reused from this process's last read while it is
   * younger than TENANT_COUNT_TTL_MS and the tenant was far below both caps.
   */
  private async partitionCounts(tenant: string): Promise<PartitionCounts> {
    const { maxSessionsPerTenant: sessionCap, maxDataSourcesPerTenant: sourceCap } = this.limits;
    const now = Date.now();
    const cached = this.tenantCounts.get(tenant);
    const far = (cap: number, of: readonly number[], headroom: number): boolean => cap <= 0 || cap - of.reduce((a, b) => a + b, 0) > headroom;
    if (cached !== undefined && now - cached.at <= TENANT_COUNT_TTL_MS && far(sessionCap, cached.active, TENANT_COUNT_HEADROOM) && far(sourceCap, cached.sources, SOURCE_COUNT_HEADROOM)) {
      return cached;
    }
    const keys = new RedisKeys(this.prefix, tenant, this.partitions);
    const read = await Promise.all(this.allPartitions().map((p) => this.call(() => this.redis.hmget(keys.counters(p), "active", "nds"))));
    const count = (raw: string | null | undefined): number => Math.max(0, Number(raw) || 0);
    const counts = { at: now, active: read.map((r) => count(r[0])), sources: read.map((r) => count(r[1])) };
    this.tenantCounts.delete(tenant);
    if (this.tenantCounts.size >= TENANT_COUNT_CACHE_SIZE) this.tenantCounts.delete(this.tenantCounts.keys().next().value as string);
    this.tenantCounts.set(tenant, counts);
    return counts;
  }

  async get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord> {
    const reply = await this.script("get", this.partitions.ofSession(sessionId), tenant, [sessionId, `${flag(options.touch)}${flag(options.includeEnded)}`], options.guard);
    // A live session comes in the short form (lua/get.ts), an ended one in full.
    return reply.length === 1 + RECORD_WIDTH ? decodeRecord(reply, 1) : decodeLiveRecord(tenant, sessionId, reply, 1);
  }

  async update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number, guard?: SessionGuard): Promise<SessionRecord> {
    const partition = this.partitions.ofSession(sessionId);
    // Only a new data source meets a cap.
    const sources = patch.dataSource === undefined ? this.limits.maxDataSourcesPerTenant : (await this.tenantCapsLeft(tenant, partition, patch.dataSource)).sources;
    const reply = await this.script(
      "update",
      partition,
      tenant,
      [
        sessionId,
        expectedVersion === undefined ? "" : expectedVersion,
        flag(patch.metadata !== undefined),
        patch.metadata ?? "",
        patch.accessLevel ?? "",
        patch.dataSource ?? "",
        sources,
        patch.sealed?.dataSource ?? "",
        patch.sealed?.metadataTag ?? "",
      ],
      guard,
    );
    return this.lowerDueHead(partition, decodeRecord(reply, 1));
  }

  /**
   * With several partitions, a session created with an unguarded request id
   * outlives its claim (request-claims.ts) only after the claim was renewed:
   * the script answers "claim" instead, and runs again once it is.
   */
  async extend(tenant: string, sessionId: string, ttlMs: number, guard?: SessionGuard): Promise<SessionRecord> {
    const partition = this.partitions.ofSession(sessionId);
    const slack = this.partitions.count > 1 ? CLAIM_SLACK_MS : "";
    const member = memberArgument(sessionId);
    let reply = await this.script("extend", partition, tenant, [sessionId, ttlMs, slack, "", member], guard);
    if (reply[0] === CLAIM_NEEDED) {
      const requestId = reply[1] as string;
      const life = 2 * ttlMs + CLAIM_SLACK_MS;
      const [, end] = await this.script("claim", this.partitions.ofRequestId(tenant, requestId), tenant, ["touch", sessionId, life, requestId]);
      reply = await this.script("extend", partition, tenant, [sessionId, ttlMs, slack, end as string, member], guard);
    }
    return this.lowerDueHead(partition, decodeRecord(reply, 1));
  }

  /** An update or extend can have added a due-queue member of the session (at most its expire time): the cached head is at most that. */
  private lowerDueHead(partition: number, session: SessionRecord): SessionRecord {
    this.dueHeads.lower(partition, session.expireTime);
    return session;
  }

  /**
   * A close that Redis refuses for lack of memory is run again under pressure:
   * it deletes the session's keys first (which frees memory and lets the rest
   * of the script write) and keeps an archive without metadata, so an operator
   * can always free memory by closing sessions.
   */
  async close(tenant: string, sessionId: string, guard?: SessionGuard): Promise<SessionRecord> {
    let reply: string[];
    try {
      reply = await this.script("close", this.partitions.ofSession(sessionId), tenant, [sessionId, memberArgument(sessionId)], guard);
    } catch (error) {
      if (!isStoreFull(error)) throw error;
      reply = await this.script("close", this.partitions.ofSession(sessionId), tenant, [sessionId, memberArgument(sessionId)], guard, true);
      this.onArchiveShortened?.();
      this.logger?.warn("redis is out of memory: a session was closed with a shortened archive (no metadata)");
    }
    // Its request id's claim goes with it (compare-and-delete); left behind, the next create with it takes it over.
    const requestId = reply[1 + RECORD_WIDTH];
    if (requestId !== undefined) {
      await this.script("claim", this.partitions.ofRequestId(tenant, requestId), tenant, ["release", sessionId, requestId]).catch(() => undefined);
    }
    return decodeRecord(reply, 1);
  }

  /**
   * A user's listing is one partition's index; any other merges one page from
   * every partition (keys.ts), ordered by (expireTime, sessionId) as each
   * partition's index is.
   */
  async list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult> {
    if (limit <= 0) return { sessions: [] };
    const args = [
      filter.userId ?? "",
      filter.dataSource ?? "",
      limit,
      after === undefined ? "" : after.expireTime,
      after === undefined ? "" : after.sessionId,
    ];
    const partitions = filter.userId === undefined ? this.allPartitions() : [this.partitions.ofUser(tenant, filter.userPlacement ?? filter.userId)];
    const replies = await Promise.all(partitions.map((p) => this.script("list", p, tenant, args)));
    if (replies.length === 1) {
      const reply = replies[0] as string[];
      const { records: sessions, unreadable, lastKey } = decodeListedRecords(reply, 2);
      const skipped = unreadable.length === 0 ? {} : { unreadable };
      if (reply[1] === "1" && lastKey !== undefined) return { sessions, next: lastKey, ...skipped };
      return { sessions, ...skipped };
    }
    const rows: { expireTime: number; sessionId: string; record?: SessionRecord }[] = [];
    let more = false;
    for (const reply of replies) {
      more ||= reply[1] === "1";
      const { records } = decodeListedRecords(reply, 2);
      const readable = new Map(records.map((r) => [r.sessionId, r]));
      for (let i = 2; i + RECORD_WIDTH <= reply.length; i += RECORD_WIDTH) {
        const sessionId = reply[i + 1] ?? "";
        const expireTime = Number(reply[i + 7]);
        if (!Number.isSafeInteger(expireTime)) continue;
        const record = readable.get(sessionId);
        rows.push(record === undefined ? { expireTime, sessionId } : { expireTime, sessionId, record });
      }
    }
    rows.sort((a, b) => a.expireTime - b.expireTime || (a.sessionId < b.sessionId ? -1 : a.sessionId > b.sessionId ? 1 : 0));
    if (rows.length > limit) more = true;
    const page = rows.slice(0, limit);
    const sessions = page.flatMap((row) => (row.record === undefined ? [] : [row.record]));
    const unreadable = page.flatMap((row) => (row.record === undefined ? [row.sessionId] : []));
    const skipped = unreadable.length === 0 ? {} : { unreadable };
    const last = page.at(-1);
    if (more && last !== undefined) return { sessions, next: { expireTime: last.expireTime, sessionId: last.sessionId }, ...skipped };
    return { sessions, ...skipped };
  }

  async setData(tenant: string, sessionId: string, key: string, value: string, guard?: SessionGuard, forms: DataKeyForms = {}): Promise<DataWriteResult> {
    const reply = await this.script("setData", this.partitions.ofSession(sessionId), tenant, [sessionId, key, value, this.limits.maxDataBytes, forms.loggedKey ?? key, ...(forms.aliases ?? [])], guard);
    return { version: Number(reply[1]) };
  }

  async getData(tenant: string, sessionId: string, key: string, guard?: SessionGuard): Promise<string | undefined> {
    const reply = await this.script("getData", this.partitions.ofSession(sessionId), tenant, [sessionId, key], guard);
    return reply[1] === "1" ? reply[2] : undefined;
  }

  async deleteData(tenant: string, sessionId: string, key: string, guard?: SessionGuard, forms: DataKeyForms = {}): Promise<DeleteDataResult> {
    const reply = await this.script("deleteData", this.partitions.ofSession(sessionId), tenant, [sessionId, key, forms.loggedKey ?? key, ...(forms.aliases ?? [])], guard);
    return { deleted: reply[1] === "1", version: Number(reply[2]) };
  }

  async listData(tenant: string, sessionId: string, includeValues: boolean, guard?: SessionGuard): Promise<Map<string, string>> {
    const reply = await this.script("listData", this.partitions.ofSession(sessionId), tenant, [sessionId, flag(includeValues)], guard);
    const pairs: [string, string][] = [];
    for (let i = 1; i + 1 < reply.length; i += 2) {
      pairs.push([reply[i] as string, reply[i + 1] as string]);
    }
    pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return new Map(pairs);
  }

  async clearData(tenant: string, sessionId: string, guard?: SessionGuard): Promise<ClearDataResult> {
    const reply = await this.script("clearData", this.partitions.ofSession(sessionId), tenant, [sessionId], guard);
    return { deletedCount: Number(reply[1]), version: Number(reply[2]) };
  }

  /** Summed over the partitions (keys.ts). */
  async counters(tenant: string): Promise<SessionCounters> {
    const keys = new RedisKeys(this.prefix, tenant, this.partitions);
    const all = await Promise.all(this.allPartitions().map((p) => this.call(() => this.redis.hgetall(keys.counters(p)))));
    const byLevel: Partial<Record<"read" | "write" | "admin", number>> = {};
    const bySource: Record<string, number> = {};
    const sums = new Map<string, number>();
    const names: Record<string, string> = {};
    for (const fields of all) {
      for (const [field, raw] of Object.entries(fields)) {
        if (field.startsWith("n:")) names[field.slice(2)] = raw;
        else sums.set(field, (sums.get(field) ?? 0) + Number(raw));
      }
    }
    for (const [field, n] of sums) {
      if (n <= 0) continue;
      if (field === "l:read" || field === "l:write" || field === "l:admin") byLevel[field.slice(2) as "read"] = n;
      else if (field.startsWith("s:")) bySource[field.slice(2)] = n;
    }
    const num = (f: string): number => sums.get(f) ?? 0;
    return {
      total: num("total"),
      active: Math.max(0, num("active")),
      expired: num("expired"),
      closed: num("closed"),
      activeByAccessLevel: byLevel,
      activeByDataSource: bySource,
      ...(Object.keys(names).length === 0 ? {} : { dataSourceNames: names }),
      endedDurationMsSum: num("dsum"),
    };
  }

  /** A random session id in the user's partition (SessionStore.newSessionId; userId or the user's placement). */
  newSessionId(tenant: string, userId: string): string {
    return this.partitions.newSessionId(tenant, userId);
  }

  /** The partition secret's copies (several partitions only): SessionStore.partitionSecretCopies. */
  partitionSecretCopies(): PartitionSecretCopies | undefined {
    return redisPartitionSecretCopies(this.redis, this.prefix, this.partitions, (command) => this.call(command));
  }

  /**
   * Every partition at once, each with its share of the limit (one round
   * trip); then, while the limit is not reached, partition by partition those
   * that filled their share or had none. Fewer than `limit` sessions means
   * nothing more is due.
   */
  async expireDue(limit: number): Promise<SessionRecord[]> {
    if (limit <= 0) return [];
    const count = this.partitions.count;
    const first = this.nextExpiryPartition;
    this.nextExpiryPartition = (first + 1) % count;
    // With several partitions, those not known to have nothing due (nextDue has just read the heads): the limit is theirs.
    const known = count === 1 ? [0] : this.dueHeads.due(Date.now());
    const order = known.map((_, i, all) => all[(first + i) % all.length] as number);
    if (order.length === 0) return [];
    const share = (i: number): number => Math.floor(limit / order.length) + (i < limit % order.length ? 1 : 0);
    const out: SessionRecord[] = [];
    const expire = async (partition: number, n: number): Promise<SessionRecord[]> => {
      const { reply, now: expiredAt } = await this.runScript("expireDue", partition, "", [n]);
      // The script's reply says the queue's head after it ran: the next look needs no read of this partition.
      this.dueHeads.set(partition, reply[1] === "" || reply[1] === undefined ? undefined : Number(reply[1]), expiredAt, Date.now());
      const records = decodeRecords(reply, 2);
      this.expiryListeners.notify(records.map((record) => ({ record, expiredAt })));
      return records;
    };
    const wave = await Promise.all(order.map((p, i) => (share(i) > 0 ? expire(p, share(i)) : Promise.resolve(undefined))));
    const again: number[] = [];
    wave.forEach((records, i) => {
      if (records !== undefined) out.push(...records);
      if (records === undefined || records.length >= share(i)) again.push(order[i] as number);
    });
    for (const partition of again) {
      if (out.length >= limit) break;
      out.push(...(await expire(partition, limit - out.length)));
    }
    return out;
  }

  /**
   * The earliest due-queue head, reading again only the heads that may have
   * changed (due-heads.ts): TIME, the last due wake-up's id and the queue's
   * lowest member in one pipeline per partition, or the next_due script
   * where that fails.
   */
  async nextDue(): Promise<DueInfo> {
    const read = async (p: number): Promise<void> => {
      const head = await this.readDueHead(p);
      if (head !== undefined) {
        this.dueHeads.set(p, head.dueAt, head.now, Date.now());
        this.dueWakeIds[p] = head.wakeId;
        return;
      }
      const reply = await this.script("nextDue", p, "", []);
      this.dueHeads.set(p, reply[1] === "" || reply[1] === undefined ? undefined : Number(reply[1]), Number(reply[2]), Date.now());
      this.dueWakeIds[p] = reply[3] ?? "0-0";
    };
    await Promise.all(this.dueHeads.stale(Date.now()).map(read));
    return this.dueHeads.earliest(Date.now());
  }

  /**
   * Waits on every partition's due wake-ups after the ids read with the
   * heads: an entry means some process's write gave a queue a new lowest
   * score, so every head is read again at the next look. One blocking
   * connection per partition, opened by the first wait.
   */
  async waitDue(until: number, signal: AbortSignal): Promise<boolean> {
    this.dueWake ??= new PartitionWake({
      keys: this.partitions.tags.map((tag) => dueWakeKey(this.prefix, tag)),
      open: () => this.connections.blockingReader(),
      within: (pending, slackMs) => this.connections.within(pending, slackMs),
      logger: this.logger,
    });
    const woken = await this.dueWake.wait(this.dueWakeIds, until, signal);
    if (woken) this.dueHeads.forget();
    return woken;
  }

  /**
   * TIME, the last due wake-up and the lowest score of the partition's due
   * queue, in one pipeline (plain commands, run in this order: a wake-up
   * after the id read belongs to a write the head may not show); undefined
   * on any failure.
   */
  private async readDueHead(partition: number): Promise<(DueInfo & { readonly wakeId: string }) | undefined> {
    const tag = this.partitions.tags[partition];
    try {
      const pipeline = this.redis.pipeline().time().xrevrange(dueWakeKey(this.prefix, tag), "+", "-", "COUNT", 1).zrange(dueKey(this.prefix, tag), "0", "0", "WITHSCORES");
      const [time, wake, head] = (await this.connections.within(pipeline.exec())) ?? [];
      if (time === undefined || wake === undefined || head === undefined || time[0] !== null || wake[0] !== null || head[0] !== null) return undefined;
      const [seconds, micros] = time[1] as [string, string];
      const score = (head[1] as string[])[1];
      return {
        dueAt: score === undefined ? undefined : Number(score),
        now: Number(seconds) * 1000 + Math.floor(Number(micros) / 1000),
        wakeId: (wake[1] as [string, string[]][])[0]?.[0] ?? "0-0",
      };
    } catch {
      return undefined;
    }
  }

  /**
   * Redis TIME, then one more command (`add`), in one pipeline: the command
   * runs after the clock was read, on the node of its key. undefined on any
   * failure (the caller falls back to a script).
   */
  private async afterClock(add: (pipeline: ChainableCommander) => ChainableCommander): Promise<{ now: number; reply: unknown } | undefined> {
    try {
      const [time, second] = (await this.connections.within(add(this.redis.pipeline().time()).exec())) ?? [];
      if (time === undefined || second === undefined || time[0] !== null || second[0] !== null) return undefined;
      const [seconds, micros] = time[1] as [string, string];
      return { now: Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), reply: second[1] };
    } catch {
      return undefined;
    }
  }

  /** Applies them at once when Redis answers within the command timeout; otherwise when it does. */
  async keepServerSettings(): Promise<ServerSettingsKeeper> {
    await this.connections.waitReady(Date.now() + this.timeoutMs).catch(() => undefined);
    return keepServerSettings({
      command: this.redis,
      within: (pending) => this.connections.within(pending),
      ...(this.logger === undefined ? {} : { logger: this.logger }),
    });
  }

  /**
   * With several partitions: the largest position of any partition, once every
   * partition's clock has passed it, so that no partition can still append an
   * event before it (merged-log.ts).
   */
  async lastEventId(tenant?: string): Promise<string> {
    if (this.partitions.count === 1) {
      const reply = await this.script("logPosition", 0, tenant ?? "", []);
      return reply[1] ?? ZERO_EVENT_ID;
    }
    for (let round = 0; ; round++) {
      const replies = await Promise.all(this.allPartitions().map((p) => this.runScript("logPosition", p, tenant ?? "", [])));
      let last = ZERO_EVENT_ID;
      let slowest = Number.POSITIVE_INFINITY;
      for (const { reply, now } of replies) {
        last = maxEventId(last, reply[1] ?? ZERO_EVENT_ID);
        slowest = Math.min(slowest, now);
      }
      if (slowest > eventIdTime(last) || round >= MERGED_CLOCK_ROUNDS) return last;
      await sleep(1);
    }
  }

  async readEvents(after: string, limit: number): Promise<StoredEvent[]> {
    parseCursor(after);
    if (limit <= 0) return [];
    const events: StoredEvent[] = [];
    const reader = new MergedLogReader(this.partitions.count, limit);
    // Unreadable entries are skipped, so read on until the page is full or the log ends: a short page means the end.
    for (let from = after, round = 0; ; round++) {
      const want = limit - events.length;
      const page = await this.readMerged(reader, from, want, round === 0);
      events.push(...page.events);
      this.unreadableListeners.notify(page.unreadable);
      if (events.length >= limit) return events;
      if (!page.more && (!page.withheld || round >= MERGED_CLOCK_ROUNDS)) return events;
      if (!page.more) await sleep(1);
      from = page.position;
    }
  }

  /**
   * One page of the merged log after `after` (merged-log.ts: `reader` keeps
   * what its partitions' reads returned beyond the page, and reads only the
   * partitions it needs); with one partition its read as is. The cursor is
   * first checked (checkCursorHeld) when `checkHeld`.
   */
  private async readMerged(reader: MergedLogReader, after: string, limit: number, checkHeld = false): Promise<MergedPage & { readonly lastIds: readonly string[] }> {
    const readOne = async (request: PartitionRequest): Promise<{ reply: string[]; read: PartitionRead }> => {
      const { reply, now } = await this.runScript("readEvents", request.partition, "", [request.after, request.count]);
      return { reply, read: { entries: (reply as unknown[])[2], asked: request.count, lastAssigned: reply[1] ?? ZERO_EVENT_ID, now, start: `${String(reply[3])}-0` } };
    };
    if (this.partitions.count === 1) {
      const { reply, read } = await readOne({ partition: 0, after, count: limit });
      if (checkHeld) await this.checkCursorHeld(after, reply, limit);
      const batch = decodeStreamBatch(read.entries);
      const more = batch.size >= limit;
      return { events: batch.events, unreadable: batch.unreadable, position: batch.lastId ?? after, more, withheld: false, lastIds: [read.lastAssigned] };
    }
    reader.seek(after);
    const requests = reader.requests();
    let reads: { request: PartitionRequest; reply: string[]; read: PartitionRead }[];
    try {
      // A checked read starts afresh and reads every partition, in order; otherwise a partition whose log has not moved needs its clock only.
      const results = await Promise.all(requests.map((request) => (checkHeld ? this.readPartition(request, readOne) : this.readUnlessQuiet(reader, request, readOne))));
      reads = results.filter((r) => r !== undefined);
      if (checkHeld) await this.checkMergedCursorHeld(after, reads, limit);
    } catch (error) {
      reader.reset();
      throw error;
    }
    for (const { request, read } of reads) reader.add(request, read);
    return { ...reader.take(limit), lastIds: reader.lastIds() };
  }

  private async readPartition(
    request: PartitionRequest,
    readOne: (request: PartitionRequest) => Promise<{ reply: string[]; read: PartitionRead }>,
  ): Promise<{ request: PartitionRequest; reply: string[]; read: PartitionRead }> {
    return { request, ...(await readOne(request)) };
  }

  /**
   * A partition that was at its log's end when last read and found nothing
   * new then (MergedLogReader.quietSince): TIME, then the log's last entry,
   * in one pipeline to the partition's node (two plain commands instead of
   * the read script). A log whose last entry is unchanged gets its new clock
   * as its bound (addClock; undefined is returned); a log that moved, or a
   * pipeline that failed (e.g. a slot in motion), is read by the script.
   */
  private async readUnlessQuiet(
    reader: MergedLogReader,
    request: PartitionRequest,
    readOne: (request: PartitionRequest) => Promise<{ reply: string[]; read: PartitionRead }>,
  ): Promise<{ request: PartitionRequest; reply: string[]; read: PartitionRead } | undefined> {
    const since = reader.quietSince(request);
    const now = since === undefined ? undefined : await this.clockIfUnchanged(request.partition, since);
    if (now === undefined) return this.readPartition(request, readOne);
    reader.addClock(request, now);
    return undefined;
  }

  /** The partition's clock (Redis TIME) read just before finding its log's last entry still `lastId` ("": still no entry); undefined otherwise or on any failure. */
  private async clockIfUnchanged(partition: number, lastId: string): Promise<number | undefined> {
    const key = eventLogKey(this.prefix, this.partitions.tags[partition]);
    const read = await this.afterClock((pipeline) => pipeline.xrevrange(key, "+", "-", "COUNT", 1));
    if (read === undefined) return undefined;
    const entries = read.reply as [string, string[]][];
    return (lastId === "" ? entries.length > 0 : entries[0]?.[0] !== lastId) ? undefined : read.now;
  }

  /**
   * checkCursorHeld with several partitions: an event id names its partition
   * (its sequence number modulo the count, see emit), whose log must hold it,
   * unless the cursor is a partition's start or the log's start.
   */
  private async checkMergedCursorHeld(after: string, reads: readonly { readonly reply: readonly unknown[] }[], limit: number): Promise<void> {
    if (compareEventIds(after, ZERO_EVENT_ID) === 0) return;
    if (reads.some(({ reply }) => after === `${String(reply[3])}-0`)) return;
    const partition = Number(after.slice(after.indexOf("-") + 1)) % this.partitions.count;
    const reply = reads[partition]?.reply;
    if (reply === undefined || after === reply[1]) return;
    const key = eventLogKey(this.prefix, this.partitions.tags[partition]);
    const held = await this.call(() => this.redis.xrange(key, after, after, "COUNT", 1));
    if (held.length > 0) return;
    await this.script("readEvents", partition, "", [after, limit]);
    throw new SessionError("out_of_range", EVENT_LOG_RESET_MESSAGE);
  }

  /**
   * A cursor the log accepted must name an entry it holds (or its start):
   * a failover to a replica that missed the log's newest entries keeps the
   * generation, and the lost ids are then merely "not trimmed". Without this
   * check a watcher that saw them would go on silently once newer events
   * pass its cursor. XRANGE runs after the script; a trim in between is told
   * apart by running the script again (it then answers out_of_range itself).
   */
  private async checkCursorHeld(after: string, reply: readonly unknown[], limit: number): Promise<void> {
    const [, lastId, , generation] = reply;
    if (compareEventIds(after, ZERO_EVENT_ID) === 0 || after === `${String(generation)}-0` || after === lastId) return;
    const key = eventLogKey(this.prefix);
    const held = await this.call(() => this.redis.xrange(key, after, after, "COUNT", 1));
    if (held.length > 0) return;
    await this.script("readEvents", 0, "", [after, limit]);
    throw new SessionError("out_of_range", EVENT_LOG_RESET_MESSAGE);
  }

  onUnreadableEvent(listener: UnreadableListener): () => void {
    return this.unreadableListeners.add(listener);
  }

  /**
   * The tail knows the generation of the log it follows (read once, then
   * from each entry's `g`); an entry of another generation means Redis lost
   * the log under it, and the read fails with EVENT_LOG_RESET_MESSAGE so the
   * reader re-checks its position (readEvents) instead of handing out events
   * of a new log as if they followed the old ones.
   */
  openEventTail(): EventTail {
    if (this.partitions.count > 1 || this.redis instanceof Cluster) return this.openMergedTail();
    const redis = this.connections.dedicated("events");
    const key = eventLogKey(this.prefix);
    /**
     * Where the last read ended past unreadable entries: its caller's position
     * stays at the last event it got, so the next read from that position
     * continues from here instead of meeting the same entries again.
     */
    let skipped: { readonly from: string; readonly to: string } | undefined;
    const generationName = generationKey(this.prefix);
    let generation: string | undefined;
    /** The entries after `after` (or after the unreadable ones it was last read past). */
    const readRaw = async (after: string, limit: number, blockMs: number): Promise<unknown[]> => {
      parseCursor(after, "after");
      const from = skipped !== undefined && skipped.from === after ? skipped.to : after;
      try {
        generation ??= (await this.connections.within(redis.get(generationName))) ?? "";
        const block = Math.max(1, blockMs);
        const raw = (await this.connections.within(redis.xread("COUNT", limit, "BLOCK", block, "STREAMS", key, from), block)) as unknown;
        if (!Array.isArray(raw)) return [];
        const stream = raw[0] as unknown;
        if (!Array.isArray(stream) || !Array.isArray(stream[1])) return [];
        const entries = stream[1] as unknown[];
        for (const entry of entries) {
          const g = entryGeneration(entry);
          if (g === undefined || g === generation) continue;
          // "" (none when the tail opened): the log was started after it, which is a reset only if it had events before.
          const reset = generation !== "" || compareEventIds(after, ZERO_EVENT_ID) !== 0;
          generation = g;
          if (reset) throw new SessionError("out_of_range", EVENT_LOG_RESET_MESSAGE);
        }
        return entries;
      } catch (e) {
        throw toSessionError(e);
      }
    };
    /** After a batch: its unreadable entries are reported, and the next read from its last event starts past them. */
    const finish = (after: string, batch: { readonly unreadable: UnreadableEntry[]; readonly lastId: string | undefined }, last: string | undefined): void => {
      this.unreadableListeners.notify(batch.unreadable);
      const end = last ?? after;
      skipped = batch.lastId !== undefined && batch.lastId !== end ? { from: end, to: batch.lastId } : undefined;
    };
    const report = (entry: UnreadableEntry): void => this.unreadableListeners.notify([entry]);
    return {
      read: async (after, limit, blockMs) => {
        const batch = decodeStreamBatch(await readRaw(after, limit, blockMs));
        finish(after, batch, batch.events.at(-1)?.id);
        return batch.events;
      },
      readEntries: async (after, limit, blockMs) => {
        const batch = decodeStreamHeads(await readRaw(after, limit, blockMs), report);
        finish(after, batch, batch.entries.at(-1)?.id);
        return batch.entries;
      },
      close: () => redis.disconnect(),
    };
  }

  /**
   * The tail over several partitions: merged reads (readMerged). While there
   * is nothing to read it waits on a blocking read of every partition's log
   * (partition-wake.ts) instead of polling; rounds are at most one per
   * MERGED_ROUND_MS, so a steady stream of events is read in batches. A
   * partition whose log Redis lost fails the read with out_of_range (its
   * generation is later than the cursor).
   */
  private openMergedTail(): EventTail {
    const wake = new PartitionWake({
      keys: this.partitions.tags.map((tag) => eventLogKey(this.prefix, tag)),
      open: () => this.connections.blockingReader(),
      within: (pending, slackMs) => this.connections.within(pending, slackMs),
      logger: this.logger,
    });
    let closed = false;
    let skipped: { readonly from: string; readonly to: string } | undefined;
    /** What the partitions' reads returned beyond the pages delivered (merged-log.ts; partitions × the largest limit asked). */
    let reader: MergedLogReader | undefined;
    /** When the last round started, and whether it left more to read at once (a backlog, or entries held back by a clock). */
    let lastRound = 0;
    let hurry: "more" | "withheld" | undefined;
    /** After a round that found nothing: where it ended, and each partition's last id then (what a wake-up waits past). */
    let idle: { readonly at: string; readonly lastIds: readonly string[] } | undefined;
    return {
      read: async (after, limit, blockMs) => {
        parseCursor(after, "after");
        const until = Date.now() + blockMs;
        let from = skipped !== undefined && skipped.from === after ? skipped.to : after;
        for (;;) {
          if (idle !== undefined && idle.at === from) {
            await wake.wait(idle.lastIds, until);
            idle = undefined;
          }
          if (closed) return [];
          const pause = hurry === "more" ? 0 : hurry === "withheld" ? 1 : lastRound + MERGED_ROUND_MS - Date.now();
          if (Date.now() + Math.max(0, pause) > until) {
            await sleep(Math.max(0, until - Date.now()));
            return [];
          }
          if (pause > 0) await sleep(pause);
          lastRound = Date.now();
          if (reader === undefined || reader.limit < limit) reader = new MergedLogReader(this.partitions.count, limit);
          const page = await this.readMerged(reader, from, limit);
          hurry = page.more ? "more" : page.withheld ? "withheld" : undefined;
          this.unreadableListeners.notify(page.unreadable);
          if (page.events.length > 0) {
            const last = page.events.at(-1)?.id ?? after;
            skipped = page.position !== last && compareEventIds(page.position, last) > 0 ? { from: last, to: page.position } : undefined;
            return page.events;
          }
          from = page.position;
          skipped = { from: after, to: from };
          if (hurry === undefined) idle = { at: from, lastIds: page.lastIds };
          if (closed || Date.now() >= until) return [];
        }
      },
      close: () => {
        closed = true;
        wake.close();
      },
    };
  }

  /**
   * Waits (within the command timeout) until every connection is ready, then
   * PINGs the command connection: a store with its event reader still
   * reconnecting cannot serve every request.
   */
  async ping(): Promise<void> {
    await this.call(async () => {
      await this.connections.waitDedicatedReady(Date.now() + this.timeoutMs);
      return this.redis.ping();
    });
  }

  /** On a cluster: the problems of every primary, together (the worst eviction policy named). */
  async problems(): Promise<StoreProblems> {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) return this.memory.read(await this.call(() => redis.info("memory")));
    const all = (await this.call(() => Promise.all(redis.nodes("master").map((node) => node.info("memory"))))).map((info) => this.memory.read(info));
    const problems = [...new Set(all.flatMap((p) => p.problems))];
    const policy = all.find((p) => p.problems.includes("eviction_policy"))?.evictionPolicy ?? all[0]?.evictionPolicy;
    return policy === undefined ? { problems } : { problems, evictionPolicy: policy };
  }

  watchReadiness(listener: (ready: boolean) => void): () => void {
    return this.connections.watchReadiness(listener);
  }

  onExpired(listener: ExpiryListener): () => void {
    return this.expiryListeners.add(listener);
  }

  /**
   * A generation made later than events of other partitions would turn their
   * ids into cursors "older than the log" there (read_events), so every
   * partition's generation is made before the first write (log_position makes
   * it). One made later means that partition lost its log, which is what the
   * generation is for.
   */
  private async ensureGenerations(): Promise<void> {
    this.generationsReady ??= Promise.all(this.allPartitions().map((p) => this.runScript("logPosition", p, "", []))).then(
      () => {
        this.generationsMade = true;
      },
      (error: unknown) => {
        this.generationsReady = undefined;
        throw error;
      },
    );
    await this.generationsReady;
  }

  private allPartitions(): number[] {
    return Array.from({ length: this.partitions.count }, (_, i) => i);
  }

  async dispose(): Promise<void> {
    this.dueWake?.close();
    this.connections.dispose();
  }

  /**
   * Runs one script with the common header; reports the sessions it expired
   * lazily (see scripts.ts, reply header), then throws the SessionError a
   * non-"ok" status names or returns the body's reply.
   */
  private async script(name: ScriptName, partition: number, tenant: string, args: readonly ScriptArg[], guard?: SessionGuard, pressure = false): Promise<string[]> {
    try {
      return (await this.runScript(name, partition, tenant, args, guard, pressure)).reply;
    } catch (error) {
      // A read that met a due session archives it; on a full Redis that write is refused, so read again under pressure.
      if (pressure || !READS.has(name) || !isStoreFull(error)) throw error;
      return (await this.runScript(name, partition, tenant, args, guard, true)).reply;
    }
  }

  /**
   * script(), also returning the script's clock: when its writes happened.
   * `pressure` (Redis refused a write for lack of memory) makes an ending
   * session free its keys before it writes, and keep a shortened archive.
   */
  private async runScript(name: ScriptName, partition: number, tenant: string, args: readonly ScriptArg[], guard?: SessionGuard, pressure = false): Promise<{ reply: string[]; now: number }> {
    if (this.partitions.count > 1 && name !== "logPosition" && !this.generationsMade) await this.ensureGenerations();
    const fn = this.library.functionName(name, pressure);
    const batchFn = this.library.batchFunctionName(name, pressure);
    const guardArgs = guard === undefined ? NO_GUARD : [[guard.userId, ...(guard.userAliases ?? [])].join("\n"), guard.level];
    const anchor = this.anchors[partition] as string;
    const waiter = ACKNOWLEDGED_WRITES.has(name) ? this.replicaWait : undefined;
    let mark: WriteMark | undefined;
    const full = await traceScript(name, this.server, () =>
      this.call(() => {
        // The anchor is KEYS[1]: the key ioredis routes the script by.
        mark = waiter?.mark(anchor);
        const call = { shared: this.sharedArguments(partition, pressure), own: [encodeTenant(tenant), ...guardArgs, ...args] };
        return batchFn === undefined ? this.functions.call(fn, anchor, loneCallArguments(call)) : this.batcher.call(fn, batchFn, anchor, call, READS.has(name));
      }),
    );
    if (!Array.isArray(full) || full.length < REPLY_HEADER_WIDTH) {
      throw new SessionError("unavailable", `unexpected reply from redis script ${name}`);
    }
    // A get's live session comes without the header (lua/get.ts): nothing expired, no clock (NaN), nothing written to wait for.
    if (name === "get" && full[0] === "ok") return { reply: full as string[], now: Number.NaN };
    const now = Number(full[0]);
    const lazyCount = Number(full[1]);
    const bodyAt = REPLY_HEADER_WIDTH + lazyCount * RECORD_WIDTH;
    // Before the status check: an extend that met a due session archived it, then answered "ended".
    if (lazyCount > 0) {
      const lazy: Expiration[] = decodeRecords(full.slice(REPLY_HEADER_WIDTH, bodyAt) as string[], 0).map((record) => ({ record, expiredAt: now }));
      this.expiryListeners.notify(lazy);
    }
    const reply: unknown[] = full.slice(bodyAt);
    if (typeof reply[0] !== "string") {
      throw new SessionError("unavailable", `unexpected reply from redis script ${name}`);
    }
    const strings = reply as string[];
    if (strings[0] !== "ok" && strings[0] !== CLAIM_NEEDED) throw scriptError(strings[0] as string, strings[1]);
    // A create replayed by its request id wrote nothing now: its WAIT must cover the first attempt's write (a claim's
    // answer may be such a session, or a claim of another connection).
    if (waiter !== undefined && mark !== undefined) await waiter.confirm(mark, name === "claim" || (name === "create" && strings[1] !== "1"));
    return { reply: strings, now };
  }

  /** The arguments every call to a partition shares (scripts.ts, ScriptCall), one array per partition and pressure. */
  private sharedArguments(partition: number, pressure: boolean): readonly ScriptArg[] {
    const index = partition * 2 + (pressure ? 1 : 0);
    let shared = this.shared[index];
    if (shared === undefined) {
      shared = [this.prefix, ...this.header, flag(pressure), this.partitions.tags[partition] as string, partition, this.partitions.count];
      this.shared[index] = shared;
    }
    return shared;
  }

  /**
   * One deadline for waiting for a connection and for the command itself.
   * Whether the command was sent decides what a failure means (call-outcome.ts).
   */
  private async call<T>(command: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    let sent = false;
    try {
      // Ready, the usual case: nothing was waited for, so the whole timeout is left (and no clock is read for it).
      let remaining = this.timeoutMs;
      if (!this.connections.readyNow()) {
        const started = waitClock();
        await this.connections.waitReady(deadline);
        // What is left counts time spent waiting (for a reconnect, for the reply), not time this process was busy
        // before it sent the command (a busy loop can take longer than the timeout to come back from the await above).
        remaining = Math.max(0, this.timeoutMs - waitedSince(started));
      }
      sent = true;
      return await withinDeadline(untilSlotSettles(command, deadline), remaining, deadlineExceeded);
    } catch (e) {
      if (isOutOfMemory(e)) this.memory.refused();
      throw classifyFailure(e, sent);
    }
  }
}

/** How long a read of a tenant's per-partition live counts is reused (partitionCounts), while far below the caps. */
const TENANT_COUNT_TTL_MS = 1000;
/**
 * Below the cap by more than this, a tenant's counts are reused for up to
 * TENANT_COUNT_TTL_MS: creates of other processes in that time are not seen,
 * and no tenant creates this many sessions in one second.
 */
const TENANT_COUNT_HEADROOM = 10_000;
/** The same for data sources: below MAX_DATA_SOURCES_PER_TENANT by more than this, counts are reused. */
const SOURCE_COUNT_HEADROOM = 1000;

/** A tenant's live sessions and live data sources (nds) per partition, read at `at`. */
interface PartitionCounts {
  readonly at: number;
  readonly active: readonly number[];
  readonly sources: readonly number[];
}
/** What a create script may still add in its partition: sessions and data sources (-1 none, 0 no cap). */
interface TenantCaps {
  readonly sessions: number;
  readonly sources: number;
}
/**
 * The create script's caps argument (lua/create.ts): "" when no cap is set
 * (the usual case), else the per-user cap, its policy and the tenant caps
 * left, space-separated. One argument rather than four: each argument of a
 * call costs Redis its parsing and a Lua string.
 */
function createCaps(maxPerUser: number, policy: string, caps: TenantCaps): string {
  if (maxPerUser === 0 && caps.sessions === 0 && caps.sources === 0) return "";
  return `${maxPerUser} ${policy} ${caps.sessions} ${caps.sources}`;
}
/** Tenants whose counts are kept (the oldest read is dropped first). */
const TENANT_COUNT_CACHE_SIZE = 1000;

/** The extend script's answer when the session's request-id claim must be renewed first (lua/extend.ts). */
const CLAIM_NEEDED = "claim";

/** How long a script refused because its slot is moving waits before it is sent again. */
const SLOT_RETRY_MS = 50;

/**
 * Sends the command again while the cluster refuses it before any write (isSlotInMotion), until the deadline.
 * The first attempt has no async frame of its own: every store call makes one, a retry is rare.
 */
function untilSlotSettles<T>(command: () => Promise<T>, deadline: number): Promise<T> {
  let attempt: Promise<T>;
  try {
    attempt = command();
  } catch (error) {
    attempt = Promise.reject(error);
  }
  return attempt.catch((error: unknown) => retryUntilSlotSettles(error, command, deadline));
}

async function retryUntilSlotSettles<T>(error: unknown, command: () => Promise<T>, deadline: number): Promise<T> {
  if (!isSlotInMotion(error) || Date.now() + SLOT_RETRY_MS >= deadline) throw error;
  await sleep(SLOT_RETRY_MS);
  return untilSlotSettles(command, deadline);
}

/**
 * Writes whose success a caller relies on: confirmed on replicas with
 * REDIS_WAIT_REPLICAS. Not expireDue: no caller waits for it, and failing it
 * after it was applied would lose its expirations' audit records.
 */
const ACKNOWLEDGED_WRITES: ReadonlySet<ScriptName> = new Set<ScriptName>(["create", "claim", "update", "extend", "close", "setData", "deleteData", "clearData"]);

/** Scripts that only read, except for archiving a due session they meet (and the best-effort access time). */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The index member of a session id for a script (its 16 bytes, which the
 * script would otherwise make at a cost: lua/indexes.ts member_is); "" for an
 * id that is not a lowercase UUID, whose member the script makes itself.
 */
function memberArgument(sessionId: string): Buffer | "" {
  return SESSION_ID.test(sessionId) ? indexMember(sessionId) : "";
}

const READS: ReadonlySet<ScriptName> = new Set<ScriptName>(["get", "getData", "listData", "list"]);

/** Redis refused the call for lack of memory (call-outcome.ts). */
function isStoreFull(error: unknown): boolean {
  return isSessionError(error) && error.kind === "limit_exceeded" && error.message === STORE_FULL_MESSAGE;
}

/** The guard arguments of a call without a guard (see the prelude's header). */
const NO_GUARD: readonly string[] = ["", ""];

function flag(b: boolean): string {
  return b ? "1" : "0";
}
