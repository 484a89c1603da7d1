/**
 * SessionStore on Redis. Every write is one Lua script (see lua/), so each
 * operation is atomic, takes its time from Redis TIME, and behaves identically
 * whichever process runs it. Reads that need no logic (counters) are plain
 * commands.
 *
 * Failure model: every call has one deadline (commandTimeoutMs). Commands are
 * never queued while Redis is unreachable (enableOfflineQueue: false) and never
 * replayed after a reconnect (autoResendUnfulfilledCommands: false), so a caller
 * told "unavailable" is not surprised later by a write that happened anyway
 * (unless the write reached Redis before the connection broke, which no client
 * can tell). A call made while disconnected waits for the reconnect until its
 * deadline, then rejects with SessionError("unavailable"). ioredis keeps
 * reconnecting in the background, so the store recovers by itself.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { SessionError } from "../../session/errors.js";
import type { SessionRecord } from "../../session/model.js";
import type {
  ClearDataResult,
  CreateSessionInput,
  CreateSessionResult,
  DataWriteResult,
  DeleteDataResult,
  GetSessionOptions,
  ListCursor,
  ListFilter,
  ListResult,
  SessionCounters,
  SessionPatch,
  SessionStore,
  StoreLimits,
} from "../store.js";
import { scriptError, toSessionError } from "./errors.js";
import { encodeTenant } from "./keys.js";
import { decodeRecord, decodeRecords } from "./record-codec.js";
import { scriptSources, type ScriptName } from "./scripts.js";

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] */
  readonly url: string;
  /** Prefix of every key (DEFAULT_KEY_PREFIX in keys.ts is "sd:"). */
  readonly keyPrefix: string;
  readonly limits: StoreLimits;
  /** Deadline of one store call, including waiting for a reconnect. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger;
}

/** Longest pause between reconnect attempts: bounds how long recovery takes once Redis is back. */
const MAX_RECONNECT_DELAY_MS = 1000;

type ScriptArg = string | number;
type ScriptFn = (...args: ScriptArg[]) => Promise<unknown>;

export class RedisStore implements SessionStore {
  readonly kind = "redis";
  private readonly redis: Redis;
  private readonly scripts: Record<ScriptName, ScriptFn>;
  private readonly timeoutMs: number;
  private readonly header: readonly ScriptArg[];
  private readonly prefix: string;
  private readonly logger: Logger | undefined;
  /** For logging transitions only (not every failed reconnect attempt). */
  private connected = false;
  private disposed = false;
  /** Calls waiting for the connection; one "ready" listener serves them all. */
  private readonly readyWaiters = new Set<() => void>();

  constructor(options: RedisStoreOptions) {
    this.timeoutMs = options.commandTimeoutMs;
    this.prefix = options.keyPrefix;
    this.logger = options.logger;
    const { limits } = options;
    this.header = [limits.expiryGraceMs, limits.archiveRetentionMs, limits.maxDataKeys];
    this.redis = new Redis(options.url, {
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      // Reject in-flight commands as soon as the connection drops.
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
    });
    this.redis.on("ready", () => {
      if (!this.connected) this.logger?.info("redis store connected");
      this.connected = true;
      for (const wake of this.readyWaiters) wake();
      this.readyWaiters.clear();
    });
    this.redis.on("error", (err: Error) => {
      // Error text from ioredis names the address and errno, never session values.
      if (this.connected) this.logger?.warn({ err: err.message }, "redis store connection error");
      this.connected = false;
    });
    this.redis.on("close", () => {
      if (this.connected && !this.disposed) this.logger?.warn("redis store connection closed");
      this.connected = false;
    });

    const sources = scriptSources();
    const scripts = {} as Record<ScriptName, ScriptFn>;
    for (const name of Object.keys(sources) as ScriptName[]) {
      const command = `sd_${name}`;
      this.redis.defineCommand(command, { lua: sources[name], numberOfKeys: 0 });
      // defineCommand adds a method the static type does not know about.
      const fn = (this.redis as unknown as Record<string, ScriptFn>)[command];
      if (fn === undefined) throw new Error(`ioredis did not define ${command}`);
      scripts[name] = fn.bind(this.redis);
    }
    this.scripts = scripts;
  }

  async create(input: CreateSessionInput): Promise<CreateSessionResult> {
    const reply = await this.script("create", input.tenant, [
      randomUUID(),
      input.userId,
      input.dataSource,
      input.accessLevel,
      input.ttlMs,
      input.metadata,
      input.requestId,
    ]);
    return { created: reply[1] === "1", session: decodeRecord(reply, 2) };
  }

  async get(tenant: string, sessionId: string, options: GetSessionOptions): Promise<SessionRecord> {
    const reply = await this.script("get", tenant, [sessionId, flag(options.touch), flag(options.includeEnded)]);
    return decodeRecord(reply, 1);
  }

  async update(tenant: string, sessionId: string, patch: SessionPatch, expectedVersion?: number): Promise<SessionRecord> {
    const reply = await this.script("update", tenant, [
      sessionId,
      expectedVersion === undefined ? "" : expectedVersion,
      flag(patch.metadata !== undefined),
      patch.metadata ?? "",
      patch.accessLevel ?? "",
      patch.dataSource ?? "",
    ]);
    return decodeRecord(reply, 1);
  }

  async extend(tenant: string, sessionId: string, ttlMs: number): Promise<SessionRecord> {
    const reply = await this.script("extend", tenant, [sessionId, ttlMs]);
    return decodeRecord(reply, 1);
  }

  async close(tenant: string, sessionId: string): Promise<SessionRecord> {
    const reply = await this.script("close", tenant, [sessionId]);
    return decodeRecord(reply, 1);
  }

  async list(tenant: string, filter: ListFilter, limit: number, after?: ListCursor): Promise<ListResult> {
    if (limit <= 0) return { sessions: [] };
    const reply = await this.script("list", tenant, [
      filter.userId ?? "",
      filter.dataSource ?? "",
      limit,
      after === undefined ? "" : after.expireTime,
      after === undefined ? "" : after.sessionId,
    ]);
    const sessions = decodeRecords(reply, 2);
    const last = sessions[sessions.length - 1];
    if (reply[1] === "1" && last !== undefined) {
      return { sessions, next: { expireTime: last.expireTime, sessionId: last.sessionId } };
    }
    return { sessions };
  }

  async setData(tenant: string, sessionId: string, key: string, value: string): Promise<DataWriteResult> {
    const reply = await this.script("setData", tenant, [sessionId, key, value]);
    return { version: Number(reply[1]) };
  }

  async getData(tenant: string, sessionId: string, key: string): Promise<string | undefined> {
    const reply = await this.script("getData", tenant, [sessionId, key]);
    return reply[1] === "1" ? reply[2] : undefined;
  }

  async deleteData(tenant: string, sessionId: string, key: string): Promise<DeleteDataResult> {
    const reply = await this.script("deleteData", tenant, [sessionId, key]);
    return { deleted: reply[1] === "1", version: Number(reply[2]) };
  }

  async listData(tenant: string, sessionId: string, includeValues: boolean): Promise<Map<string, string>> {
    const reply = await this.script("listData", tenant, [sessionId, flag(includeValues)]);
    const pairs: [string, string][] = [];
    for (let i = 1; i + 1 < reply.length; i += 2) {
      pairs.push([reply[i] as string, reply[i + 1] as string]);
    }
    pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return new Map(pairs);
  }

  async clearData(tenant: string, sessionId: string): Promise<ClearDataResult> {
    const reply = await this.script("clearData", tenant, [sessionId]);
    return { deletedCount: Number(reply[1]), version: Number(reply[2]) };
  }

  async counters(tenant: string): Promise<SessionCounters> {
    const key = `${this.prefix}${encodeTenant(tenant)}:m`;
    const fields = await this.call(() => this.redis.hgetall(key));
    const byLevel: Partial<Record<"read" | "write" | "admin", number>> = {};
    const bySource: Record<string, number> = {};
    for (const [field, raw] of Object.entries(fields)) {
      const n = Number(raw);
      if (n <= 0) continue;
      if (field === "l:read" || field === "l:write" || field === "l:admin") byLevel[field.slice(2) as "read"] = n;
      else if (field.startsWith("s:")) bySource[field.slice(2)] = n;
    }
    const num = (f: string): number => Number(fields[f] ?? 0);
    return {
      total: num("total"),
      active: Math.max(0, num("active")),
      expired: num("expired"),
      closed: num("closed"),
      activeByAccessLevel: byLevel,
      activeByDataSource: bySource,
      endedDurationMsSum: num("dsum"),
    };
  }

  async expireDue(limit: number): Promise<SessionRecord[]> {
    if (limit <= 0) return [];
    const reply = await this.script("expireDue", "", [limit]);
    return decodeRecords(reply, 1);
  }

  async ping(): Promise<void> {
    await this.call(() => this.redis.ping());
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.redis.disconnect();
  }

  /** Runs one script with the common header; throws the SessionError a non-"ok" status names. */
  private async script(name: ScriptName, tenant: string, args: readonly ScriptArg[]): Promise<string[]> {
    const fn = this.scripts[name];
    const reply = await this.call(() => fn(this.prefix, encodeTenant(tenant), ...this.header, ...args));
    if (!Array.isArray(reply) || typeof reply[0] !== "string") {
      throw new SessionError("unavailable", `unexpected reply from redis script ${name}`);
    }
    const strings = reply as string[];
    if (strings[0] !== "ok") throw scriptError(strings[0] as string);
    return strings;
  }

  /** One deadline for waiting for a connection and for the command itself. */
  private async call<T>(command: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.waitReady(deadline);
      const pending = command();
      const remaining = Math.max(0, deadline - Date.now());
      const expired = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new SessionError("unavailable", "redis did not answer in time")), remaining);
      });
      // The command may still settle after the deadline; nobody waits for it then.
      pending.catch(() => {});
      return await Promise.race([pending, expired]);
    } catch (e) {
      throw toSessionError(e);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  private waitReady(deadline: number): Promise<void> {
    if (this.disposed) return Promise.reject(new SessionError("unavailable", "redis store is disposed"));
    if (this.redis.status === "ready") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(
        () => {
          this.readyWaiters.delete(wake);
          reject(new SessionError("unavailable", `redis not reachable (${this.redis.status})`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.readyWaiters.add(wake);
    });
  }
}

function flag(b: boolean): string {
  return b ? "1" : "0";
}
