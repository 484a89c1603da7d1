/**
 * The Redis connections of one RedisStore: the shared command connection and
 * the dedicated ones (event reader, keyspace subscriber), their readiness,
 * and waiting for them within a call's deadline.
 *
 * Commands are never queued on the command connection while Redis is
 * unreachable (enableOfflineQueue: false) and never replayed after a reconnect
 * (autoResendUnfulfilledCommands: false); callers wait for "ready" here instead.
 */
import { Redis } from "ioredis";
import type { Logger } from "pino";
import { SessionError } from "../../domain/errors.js";
import { withinDeadline } from "../../observability/loop-aware-deadline.js";
import { deadlineExceeded } from "./call-outcome.js";

/** The connections of a RedisStore, as onConnection names them. */
export type RedisConnectionName = "store" | "events" | "keyspace";

export interface RedisConnectionsOptions {
  /** redis://[user:password@]host:port[/db] */
  readonly url: string;
  /** Deadline of one store call, including waiting for a reconnect. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Called with every connection before it can emit any event (see RedisStoreOptions.onConnection). */
  readonly onConnection?: ((client: Redis, name: RedisConnectionName) => void) | undefined;
}

/**
 * Longest pause between reconnect attempts: bounds how long recovery takes once
 * Redis is back (event delivery resumes within a second of it).
 */
const MAX_RECONNECT_DELAY_MS = 250;

export class RedisConnections {
  /** The shared connection every plain command and script runs on. */
  readonly command: Redis;
  private readonly timeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly onConnection: RedisConnectionsOptions["onConnection"];
  /** For logging transitions only (not every failed reconnect attempt). */
  private connected = false;
  private disposedFlag = false;
  /** Calls waiting for the command connection; one "ready" listener serves them all. */
  private readonly readyWaiters = new Set<() => void>();
  /**
   * Every connection the store serves with, until it is closed on purpose:
   * the store can serve every request only while all of them are ready (a
   * reconnecting event reader means watchers hear nothing; a reconnecting
   * subscriber means no expiry hints).
   */
  private readonly serving = new Set<Redis>();
  private readonly readinessListeners = new Set<(ready: boolean) => void>();
  /** What readiness listeners were last told. */
  private lastReady: boolean | undefined;

  constructor(options: RedisConnectionsOptions) {
    this.timeoutMs = options.commandTimeoutMs;
    this.logger = options.logger;
    this.onConnection = options.onConnection;
    this.command = new Redis(options.url, {
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      // Reject in-flight commands as soon as the connection drops.
      maxRetriesPerRequest: 0,
      // No commandTimeout: it is a wall-clock timer; RedisStore.call() bounds every command with a loop-aware deadline.
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
    });
    this.track(this.command, "store");
    this.command.on("ready", () => {
      if (!this.connected) this.logger?.info("redis store connected");
      this.connected = true;
      for (const wake of this.readyWaiters) wake();
      this.readyWaiters.clear();
    });
    this.command.on("error", (err: Error) => {
      // Error text from ioredis names the address and errno, never session values.
      if (this.connected) this.logger?.warn({ err: err.message }, "redis store connection error");
      this.connected = false;
    });
    this.command.on("close", () => {
      if (this.connected && !this.disposedFlag) this.logger?.warn("redis store connection closed");
      this.connected = false;
    });
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Resolves once the command connection is ready; rejects with unavailable at the deadline or once disposed. */
  waitReady(deadline: number): Promise<void> {
    if (this.disposedFlag) return Promise.reject(new SessionError("unavailable", "redis store is disposed"));
    if (this.command.status === "ready") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const wake = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(
        () => {
          this.readyWaiters.delete(wake);
          reject(new SessionError("unavailable", `redis not reachable (${this.command.status})`));
        },
        Math.max(0, deadline - Date.now()),
      );
      this.readyWaiters.add(wake);
    });
  }

  /** Waits until every dedicated connection is ready (the command connection is the caller's to check). */
  async waitDedicatedReady(deadline: number): Promise<void> {
    for (const connection of this.serving) {
      if (connection !== this.command) await waitForReady(connection, deadline);
    }
  }

  /** Tells the listener whenever "every connection is ready" flips; returns the unsubscribe. */
  watchReadiness(listener: (ready: boolean) => void): () => void {
    this.readinessListeners.add(listener);
    return () => {
      this.readinessListeners.delete(listener);
    };
  }

  /**
   * `pending` (a command), or deadline_exceeded once the command timeout plus
   * `slackMs` (a BLOCK's own wait) has passed without its reply, counted in
   * time this process could have read it (loop-aware-deadline.ts). Every
   * command on a dedicated connection goes through here.
   */
  within<T>(pending: Promise<T>, slackMs = 0): Promise<T> {
    return withinDeadline(pending, this.timeoutMs + slackMs, deadlineExceeded);
  }

  /**
   * A dedicated connection (a blocking XREAD or a subscriber would stall every
   * command queued behind it on the shared one). Commands wait for it to
   * reconnect; its owner bounds each one with within(), not with ioredis's
   * commandTimeout, a wall-clock timer that fires while a busy loop has the
   * reply unread.
   */
  dedicated(purpose: Exclude<RedisConnectionName, "store">): Redis {
    const redis = this.command.duplicate({
      enableOfflineQueue: true,
      // The event reader's XREAD must fail the moment its connection drops, so the
      // reader re-issues it at once: ioredis neither resends it
      // (autoResendUnfulfilledCommands is off) nor rejects it otherwise before
      // the command timeout (a BLOCK's wait included).
      maxRetriesPerRequest: purpose === "events" ? 0 : null,
      // The keyspace subscriber resubscribes itself, with its errors handled (see keyspace-expiry.ts).
      autoResubscribe: false,
    });
    redis.on("error", (err: Error) => {
      if (!this.disposedFlag) this.logger?.debug({ err: err.message, purpose }, "redis connection error");
    });
    this.track(redis, purpose);
    return redis;
  }

  /** Closes the command connection; dedicated ones are closed by their owners. */
  dispose(): void {
    this.disposedFlag = true;
    this.command.disconnect();
  }

  /**
   * Hands a new connection to onConnection and follows its state for
   * readiness, until it ends (closed on purpose: disconnect() with no retry).
   */
  private track(redis: Redis, name: RedisConnectionName): void {
    this.onConnection?.(redis, name);
    this.serving.add(redis);
    const changed = (): void => this.readinessChanged();
    redis.on("ready", changed);
    redis.on("close", changed);
    redis.once("end", () => {
      this.serving.delete(redis);
      redis.off("ready", changed);
      redis.off("close", changed);
      this.readinessChanged();
    });
  }

  /** Tells readiness listeners when "every connection is ready" flips. */
  private readinessChanged(): void {
    if (this.disposedFlag) return;
    const ready = [...this.serving].every((c) => c.status === "ready");
    if (ready === this.lastReady) return;
    this.lastReady = ready;
    for (const listener of [...this.readinessListeners]) listener(ready);
  }
}

/** Resolves once the connection is ready; rejects with unavailable at the deadline. */
function waitForReady(redis: Redis, deadline: number): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(
      () => {
        redis.off("ready", onReady);
        reject(new SessionError("unavailable", `redis not reachable (${redis.status})`));
      },
      Math.max(0, deadline - Date.now()),
    );
    redis.once("ready", onReady);
  });
}
