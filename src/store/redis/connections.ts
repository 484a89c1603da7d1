/**
 * The Redis connections of one RedisStore: the shared command connection and
 * the dedicated one (the event reader), their readiness,
 * and waiting for them within a call's deadline; and how any connection to
 * the store's Redis is made (redisClient), from a URL or through Sentinel.
 *
 * Through Sentinel, every connection asks the sentinels for the current
 * primary whenever it (re)connects and checks the role of what it reached.
 * A killed primary breaks its connections by itself. A primary that is alive
 * when the sentinels switch (a failover they were told to make, a partition)
 * keeps serving as a primary until Sentinel demotes it, seconds later: the
 * store listens for +switch-master on every sentinel (watchSwitchMaster) and
 * reconnects each ready connection that is not on the new primary; a write
 * refused as READONLY also makes a connection reconnect. So the store follows
 * a failover without a restart. Dedicated connections are duplicates of the
 * command connection and inherit all of that. ioredis's own failoverDetector
 * stays off: a +switch-master that arrives while a connection is asking the
 * sentinels ends that connection for good (its connect() rejects and ioredis
 * gives up); here only ready connections are told to reconnect.
 *
 * Commands are never queued on the command connection while Redis is
 * unreachable (enableOfflineQueue: false) and never replayed after a reconnect
 * (autoResendUnfulfilledCommands: false); callers wait for "ready" here instead.
 *
 * The command connection pipelines automatically (enableAutoPipelining): the
 * commands issued in one event-loop turn go out in one socket write instead
 * of one write (one system call) each, which under concurrent calls is most
 * of what a command costs this process. A command waits at most for the
 * pipeline already in flight; a connection that drops fails the queued
 * commands as unsent (call-outcome.ts), so nothing is replayed.
 *
 * On a Redis Cluster the command connection is an ioredis Cluster: it routes
 * each script by its KEYS[1] (the partition's slot, keys.ts), follows MOVED
 * and ASK, and retries CLUSTERDOWN and TRYAGAIN replies a few times (a
 * failover or a slot migration in progress) within the call's deadline.
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { SessionError } from "../../domain/errors.js";
import { withinDeadline } from "../../observability/loop-aware-deadline.js";
import { keySlot } from "./keys.js";
import { redisAddress } from "../../startup/redis-reachable.js";
import { deadlineExceeded } from "./call-outcome.js";

/** The connections of a RedisStore, as onConnection names them. */
export type RedisConnectionName = "store" | "events";

/** A Redis Cluster: its seed nodes (any subset of the cluster's nodes). */
export interface RedisClusterTarget {
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  /** Password (and user) for every node, when the cluster requires AUTH. */
  readonly username?: string;
  readonly password?: string;
  /** TLS to every node, verified against `ca` (PEM) or the system CAs. */
  readonly tls?: { readonly ca?: string };
}

/**
 * The AUTH and TLS of every connection to a cluster node (ioredis Cluster
 * redisOptions; connections opened from a node's options inherit them).
 * Node certificates are verified (host names and
 * IPs as the cluster announces them).
 */
export function clusterAuth(target: RedisClusterTarget): Pick<RedisOptions, "username" | "password" | "tls"> {
  return {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
    ...(target.tls === undefined ? {} : { tls: target.tls.ca === undefined ? {} : { ca: target.tls.ca } }),
  };
}

/** The command connection: one Redis, or a Redis Cluster. */
export type RedisCommandConnection = Redis | Cluster;

/**
 * On a Redis Cluster, the connection to the primary that owns a key's slot
 * according to the client's slot map: the connection ioredis sends that key's
 * commands over (so a WAIT on it counts that primary's replicas). Public
 * ioredis API only (Cluster.slots: node keys "host:port" per slot, primary
 * first; Cluster.nodes("master")). Throws unavailable when the slot has no
 * known primary.
 */
export function clusterPrimaryFor(cluster: Cluster): (key: string) => Redis {
  return (key) => {
    const owner = cluster.slots[keySlot(key)]?.[0];
    const node = owner === undefined ? undefined : cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === owner);
    if (node === undefined) throw new SessionError("unavailable", "no Redis Cluster primary is known for a partition");
    return node;
  };
}

/** How often ioredis retries a command that met CLUSTERDOWN, TRYAGAIN or a failover, and how long it waits between tries. */
const CLUSTER_RETRY_DELAY_MS = 100;

/** A Redis primary found through Sentinel. */
export interface RedisSentinelTarget {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The master group name (`sentinel monitor <name> ...`). */
  readonly masterName: string;
  /** Of the Redis servers (primary and replicas). */
  readonly password?: string | undefined;
  /** Of the sentinels. */
  readonly sentinelPassword?: string | undefined;
  /** ACL user of the Redis servers (absent: the default user). */
  readonly username?: string | undefined;
  /** ACL user of the sentinels. */
  readonly sentinelUsername?: string | undefined;
  /** Database number on the Redis servers (absent: 0). */
  readonly db?: number | undefined;
  /** TLS to the sentinels and to the servers they name, verified against `ca` (PEM) or the system CAs. */
  readonly tls?: { readonly ca?: string | undefined } | undefined;
}

/** The AUTH and TLS of a connection to a sentinel (ioredis's sentinel options, or a plain connection's). */
function sentinelAuth(target: RedisSentinelTarget): Pick<RedisOptions, "username" | "password" | "tls"> {
  return {
    ...(target.sentinelUsername === undefined ? {} : { username: target.sentinelUsername }),
    ...(target.sentinelPassword === undefined ? {} : { password: target.sentinelPassword }),
    ...(target.tls === undefined ? {} : { tls: target.tls.ca === undefined ? {} : { ca: target.tls.ca } }),
  };
}

/** Where the store's Redis is: a URL (redis://[user:password@]host:port[/db]) or Sentinel. */
export type RedisTarget = { readonly url: string; readonly sentinel?: undefined } | { readonly url?: undefined; readonly sentinel: RedisSentinelTarget };

/**
 * Longest pause between reconnect attempts: bounds how long recovery takes once
 * Redis is back (event delivery resumes within a second of it).
 */
export const MAX_RECONNECT_DELAY_MS = 250;

/** The bounded backoff of every store connection's reconnects (and, through Sentinel, of asking the sentinels again). */
export function reconnectDelay(attempt: number, maxMs = MAX_RECONNECT_DELAY_MS): number {
  return Math.min(50 * 2 ** attempt, maxMs);
}

/** A write refused by a primary that was demoted under this connection. */
const DEMOTED = /^READONLY\b/;

/**
 * A connection to the target's Redis (the primary, through Sentinel) with the
 * given options; the caller's options win except where Sentinel needs its own.
 */
export function redisClient(target: RedisTarget, options: RedisOptions): Redis {
  if (target.sentinel === undefined) return new Redis(target.url, options);
  const sentinel = target.sentinel;
  const retry = options.retryStrategy;
  return new Redis({
    ...options,
    sentinels: sentinel.sentinels.map(({ host, port }) => ({ host, port })),
    name: sentinel.masterName,
    role: "master",
    ...(sentinel.username === undefined ? {} : { username: sentinel.username }),
    ...(sentinel.password === undefined ? {} : { password: sentinel.password }),
    ...(sentinel.db === undefined ? {} : { db: sentinel.db }),
    ...(sentinel.sentinelUsername === undefined ? {} : { sentinelUsername: sentinel.sentinelUsername }),
    ...(sentinel.sentinelPassword === undefined ? {} : { sentinelPassword: sentinel.sentinelPassword }),
    // One TLS setting for both: the sentinels (sentinelTLS) and the servers they name (tls, which ioredis applies in sentinel mode only with enableTLSForSentinelMode).
    ...(sentinel.tls === undefined
      ? {}
      : { tls: sentinelAuth(sentinel).tls ?? {}, sentinelTLS: sentinelAuth(sentinel).tls ?? {}, enableTLSForSentinelMode: true }),
    // Asking every sentinel again follows the connection's own retry rule (none: a one-shot probe fails at once).
    sentinelRetryStrategy: (attempt) => (typeof retry === "function" ? retry(attempt) : reconnectDelay(attempt)),
    // Reconnect (asking the sentinels) when a write meets a demoted primary; the refused command still fails.
    reconnectOnError: (error) => DEMOTED.test(error.message),
  });
}

/** The channel on which sentinels announce a new primary: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
const SWITCH_MASTER = "+switch-master";

/**
 * Subscribes to +switch-master on every sentinel (each connection retries on
 * its own) and calls onSwitch with the new primary of `masterName`; returns
 * the stop function.
 */
export function watchSwitchMaster(target: RedisSentinelTarget, onSwitch: (host: string, port: number) => void): () => void {
  const clients = target.sentinels.map(({ host, port }) => {
    const client = new Redis({
      host,
      port,
      ...sentinelAuth(target),
      maxRetriesPerRequest: null,
      retryStrategy: (attempt) => reconnectDelay(attempt, 1000),
    });
    client.on("error", () => {
      // A sentinel down: the others still announce; this one resubscribes when it is back (autoResubscribe).
    });
    client.on("message", (channel: string, message: string) => {
      const [name, , , newHost, newPort] = message.split(" ");
      if (channel === SWITCH_MASTER && name === target.masterName && newHost !== undefined) onSwitch(newHost, Number(newPort));
    });
    client.subscribe(SWITCH_MASTER).catch(() => {});
    return client;
  });
  return () => {
    for (const client of clients) client.disconnect();
  };
}

/**
 * Through Sentinel: whenever a new primary is announced, each ready connection
 * of `connections()` that is not on it reconnects (asking the sentinels);
 * returns the stop function. A connection that is connecting asks them anyway.
 */
export function followSwitchMaster(target: RedisSentinelTarget, connections: () => Iterable<RedisCommandConnection>, announced?: (primary: string) => void): () => void {
  return watchSwitchMaster(target, (host, port) => {
    announced?.(`${host}:${port}`);
    for (const redis of connections()) {
      if (redis instanceof Redis && redis.status === "ready" && !connectedTo(redis, host, port)) redis.disconnect(true);
    }
  });
}

/** Whether a ready connection's socket goes to host:port (IPv4-mapped IPv6 addresses compared as IPv4). */
function connectedTo(redis: Redis, host: string, port: number): boolean {
  const socket = redis.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  const address = socket?.remoteAddress?.replace(/^::ffff:/, "");
  return socket?.remotePort === port && address === host.replace(/^::ffff:/, "");
}

/** Where a target points, for messages and trace attributes (never a password). */
export function describeTarget(target: RedisTarget): string {
  if (target.sentinel === undefined) return redisAddress(target.url);
  const { sentinels, masterName } = target.sentinel;
  return `primary "${masterName}" of sentinels ${sentinels.map((s) => `${s.host}:${s.port}`).join(",")}`;
}

export type RedisConnectionsOptions = RedisTarget & {
  /** A Redis Cluster instead of the target (whose url is then unused). */
  readonly cluster?: RedisClusterTarget | undefined;
  /** Deadline of one store call, including waiting for a reconnect. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Called with every connection before it can emit any event (see RedisStoreOptions.onConnection). */
  readonly onConnection?: ((client: RedisCommandConnection, name: RedisConnectionName) => void) | undefined;
};

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
   * reconnecting event reader means watchers hear nothing).
   */
  private readonly serving = new Set<RedisCommandConnection>();
  private readonly readinessListeners = new Set<(ready: boolean) => void>();
  /** What readiness listeners were last told. */
  private lastReady: boolean | undefined;
  /** Stops following +switch-master (Sentinel only). */
  private readonly stopSwitchWatch: (() => void) | undefined;

  constructor(options: RedisConnectionsOptions) {
    this.timeoutMs = options.commandTimeoutMs;
    this.logger = options.logger;
    this.onConnection = options.onConnection;
    const nodeOptions = {
      autoResendUnfulfilledCommands: false,
      enableAutoPipelining: true,
      // Reject in-flight commands as soon as the connection drops.
      maxRetriesPerRequest: 0,
      // No commandTimeout: it is a wall-clock timer; RedisStore.call() bounds every command with a loop-aware deadline.
      connectTimeout: Math.max(options.commandTimeoutMs, 1000),
      retryStrategy: (attempt: number) => reconnectDelay(attempt),
    };
    const cluster = options.cluster;
    this.command =
      cluster === undefined
        ? redisClient(options, { ...nodeOptions, enableOfflineQueue: false })
        : new Cluster(
            cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
            {
              enableOfflineQueue: false,
              // Every script writes; replicas lag (asynchronous replication), so reads go to primaries too.
              scaleReads: "master",
              clusterRetryStrategy: (attempt: number) => reconnectDelay(attempt),
              retryDelayOnFailover: CLUSTER_RETRY_DELAY_MS,
              retryDelayOnClusterDown: CLUSTER_RETRY_DELAY_MS,
              retryDelayOnTryAgain: CLUSTER_RETRY_DELAY_MS,
              slotsRefreshTimeout: Math.max(options.commandTimeoutMs, 1000),
              redisOptions: { ...nodeOptions, ...clusterAuth(cluster) },
            },
          );
    this.track(this.command, "store");
    this.stopSwitchWatch =
      options.sentinel === undefined
        ? undefined
        : followSwitchMaster(
            options.sentinel,
            () => (this.disposedFlag ? [] : this.serving),
            (primary) => {
              if (!this.disposedFlag) this.logger?.warn({ primary }, "redis sentinel announced a new primary; reconnecting");
            },
          );
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
    // ioredis ends a connection for good when a connect attempt itself rejects
    // (through Sentinel: one interrupted while asking the sentinels); only dispose() may end it.
    this.command.on("end", () => {
      if (this.disposedFlag) return;
      setTimeout(() => {
        if (!this.disposedFlag && this.command.status === "end") this.command.connect().catch(() => {});
      }, MAX_RECONNECT_DELAY_MS).unref();
    });
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** Whether a command can be sent now (waitReady would resolve at once). */
  readyNow(): boolean {
    return !this.disposedFlag && this.command.status === "ready";
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
   * A dedicated connection (a blocking XREAD would stall every
   * command queued behind it on the shared one). Commands wait for it to
   * reconnect; its owner bounds each one with within(), not with ioredis's
   * commandTimeout, a wall-clock timer that fires while a busy loop has the
   * reply unread.
   */
  dedicated(purpose: Exclude<RedisConnectionName, "store">): Redis {
    if (this.command instanceof Cluster) throw new Error("a Redis Cluster has no single dedicated connection: open one per node");
    const redis = this.command.duplicate({
      enableOfflineQueue: true,
      // One blocking command at a time: nothing to batch.
      enableAutoPipelining: false,
      // The event reader's XREAD must fail the moment its connection drops, so the
      // reader re-issues it at once: ioredis neither resends it
      // (autoResendUnfulfilledCommands is off) nor rejects it otherwise before
      // the command timeout (a BLOCK's wait included).
      maxRetriesPerRequest: 0,
    });
    redis.on("error", (err: Error) => {
      if (!this.disposedFlag) this.logger?.debug({ err: err.message, purpose }, "redis connection error");
    });
    this.track(redis, purpose);
    return redis;
  }

  /**
   * A connection for one partition's blocking reads (partition-wake.ts): a
   * dedicated connection, or on a Redis Cluster a Cluster of its own with the
   * command connection's nodes and options, so that it follows the slot of
   * the key it reads wherever it moves.
   */
  blockingReader(): Redis | Cluster {
    if (!(this.command instanceof Cluster)) return this.dedicated("events");
    const cluster = this.command.duplicate([], {
      enableOfflineQueue: true,
      redisOptions: { enableAutoPipelining: false, maxRetriesPerRequest: 0 },
    });
    cluster.on("error", (err: Error) => {
      if (!this.disposedFlag) this.logger?.debug({ err: err.message, purpose: "events" }, "redis connection error");
    });
    this.track(cluster, "events");
    return cluster;
  }

  /** Closes the command connection; dedicated ones are closed by their owners. */
  dispose(): void {
    this.disposedFlag = true;
    this.stopSwitchWatch?.();
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
