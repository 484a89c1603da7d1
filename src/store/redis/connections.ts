/**
 * The Redis connections of one RedisStore: the shared command connection and
 * the dedicated ones (event reader, keyspace subscriber), their readiness,
 * and waiting for them within a call's deadline.
 *
 * Commands are never queued on the command connection while Redis is
 * unreachable (enableOfflineQueue: false) and never replayed after a reconnect
 * (autoResendUnfulfilledCommands: false); callers wait for "ready" here instead.
 *
 * On a Redis Cluster the command connection is an ioredis Cluster: it routes
 * each script by its KEYS[1] (the partition's slot, keys.ts), follows MOVED
 * and ASK, and retries CLUSTERDOWN and TRYAGAIN replies a few times (a
 * failover or a slot migration in progress) within the call's deadline.
 */
import { Cluster, Redis } from "ioredis";
import type { Logger } from "pino";
import { SessionError } from "../../domain/errors.js";

/** The connections of a RedisStore, as onConnection names them. */
export type RedisConnectionName = "store" | "events" | "keyspace";

/** A Redis Cluster: its seed nodes (any subset of the cluster's nodes). */
export interface RedisClusterTarget {
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  /** Password (and user) for every node, when the cluster requires AUTH. */
  readonly username?: string;
  readonly password?: string;
}

/** The command connection: one Redis, or a Redis Cluster. */
export type RedisCommandConnection = Redis | Cluster;

export interface RedisConnectionsOptions {
  /** redis://[user:password@]host:port[/db]; ignored when cluster is set. */
  readonly url: string;
  readonly cluster?: RedisClusterTarget | undefined;
  /** Deadline of one store call, including waiting for a reconnect. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Called with every connection before it can emit any event (see RedisStoreOptions.onConnection). */
  readonly onConnection?: ((client: RedisCommandConnection, name: RedisConnectionName) => void) | undefined;
}

/** How often ioredis retries a command that met CLUSTERDOWN, TRYAGAIN or a failover, and how long it waits between tries. */
const CLUSTER_RETRY_DELAY_MS = 100;

/**
 * Longest pause between reconnect attempts: bounds how long recovery takes once
 * Redis is back (event delivery resumes within a second of it).
 */
const MAX_RECONNECT_DELAY_MS = 250;

export class RedisConnections {
  /** The shared connection every plain command and script runs on. */
  readonly command: RedisCommandConnection;
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
  private readonly serving = new Set<RedisCommandConnection>();
  private readonly readinessListeners = new Set<(ready: boolean) => void>();
  /** What readiness listeners were last told. */
  private lastReady: boolean | undefined;

  constructor(options: RedisConnectionsOptions) {
    this.timeoutMs = options.commandTimeoutMs;
    this.logger = options.logger;
    this.onConnection = options.onConnection;
    const nodeOptions = {
      autoResendUnfulfilledCommands: false,
      // Reject in-flight commands as soon as the connection drops.
      maxRetriesPerRequest: 0,
      // No commandTimeout: it is a wall-clock timer; RedisStore.call() bounds every command with a loop-aware deadline.
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
    };
    const cluster = options.cluster;
    this.command =
      cluster === undefined
        ? new Redis(options.url, { ...nodeOptions, enableOfflineQueue: false })
        : new Cluster(
            cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
            {
              enableOfflineQueue: false,
              // Every script writes; replicas lag (asynchronous replication), so reads go to primaries too.
              scaleReads: "master",
              clusterRetryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, MAX_RECONNECT_DELAY_MS),
              retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
              retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
              retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
              slotsRefreshTimeout: Math.max(options.commandTimeoutMs, 1000),
              redisOptions: {
                ...nodeOptions,
                ...(cluster.username === undefined ? {} : { username: cluster.username }),
                ...(cluster.password === undefined ? {} : { password: cluster.password }),
              },
            },
          );
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
   * A dedicated connection (a blocking XREAD or a subscriber would stall every
   * command queued behind it on the shared one). Commands wait for it to
   * reconnect, bounded by the command timeout plus `slackMs` (a BLOCK's own wait).
   */
  dedicated(purpose: Exclude<RedisConnectionName, "store">, slackMs = 0): Redis {
    if (this.command instanceof Cluster) throw new Error("a Redis Cluster has no single dedicated connection: open one per node");
    const redis = this.command.duplicate({
      enableOfflineQueue: true,
      // The event reader's XREAD must fail the moment its connection drops, so the
      // reader re-issues it at once: ioredis neither resends it
      // (autoResendUnfulfilledCommands is off) nor rejects it otherwise before
      // the command timeout (a BLOCK's wait included).
      maxRetriesPerRequest: purpose === "events" ? 0 : null,
      commandTimeout: this.timeoutMs + slackMs,
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
  private track(redis: RedisCommandConnection, name: RedisConnectionName): void {
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
function waitForReady(redis: RedisCommandConnection, deadline: number): Promise<void> {
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
