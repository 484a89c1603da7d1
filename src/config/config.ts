/**
 * Service configuration, read from the environment once at start.
 *
 * Every setting has a documented default (README "Configuration"); an invalid
 * value stops the start with a message naming the variable, because a service
 * that silently falls back to a default on a typo is worse than one that refuses
 * to start. Every problem is collected before the start stops, so an operator
 * fixes them in one round instead of one per restart.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { SEAL_ALGORITHMS, type SealAlgorithm } from "../crypto/field-cipher.js";
import { KeyringError, parseKeyring, type Keyring } from "../crypto/keyring.js";

export interface TtlConfig {
  /** TTL of a session created without one. */
  readonly defaultMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

/** READ_CACHE_*: see src/session/read-cache.ts for what a copy may show and for how long. */
export interface ReadCacheConfig {
  /** Longest a copy answers GetSession; 0: no copies. */
  readonly maxAgeMs: number;
  /** Most copies in one process. */
  readonly entries: number;
}

/** A copy older than this would make a closed session readable for too long to call it a cache. */
const READ_CACHE_MAX_AGE_LIMIT_MS = 60_000;

export interface LimitsConfig {
  /** Largest accepted request message, in bytes (connect's own default is 4 GiB). */
  readonly maxRequestBytes: number;
  /** Largest metadata object, serialized as JSON, in bytes. */
  readonly maxMetadataBytes: number;
  /** Longest data key, in characters. */
  readonly maxDataKeyLength: number;
  /** Largest data value, serialized as JSON, in bytes. */
  readonly maxDataValueBytes: number;
  /** Most data keys in one session. */
  readonly maxDataKeys: number;
  /** Most bytes of data values in one session, as stored (encrypted values included). */
  readonly maxDataBytes: number;
  /** Most live sessions per user (per tenant); 0: no cap. */
  readonly maxSessionsPerUser: number;
  /** What a create beyond maxSessionsPerUser does. */
  readonly sessionsPerUserPolicy: "reject" | "close_oldest";
  /** Most live sessions per tenant; 0: no cap. */
  readonly maxSessionsPerTenant: number;
  /** Most data sources with live sessions per tenant; 0: no cap. */
  readonly maxDataSourcesPerTenant: number;
  /** Most concurrent WatchSessions streams of one principal (in one process). */
  readonly maxWatchersPerPrincipal: number;
  readonly defaultPageSize: number;
  readonly maxPageSize: number;
}

/**
 * Bounds on what a caller can hold at the edge (src/server/connection-limits.ts,
 * src/auth/request-gate.ts), whoever it is: connections, streams, header bytes, and
 * how slowly a request may arrive. Each has a safe default (README "Limits at the edge").
 */
export interface EdgeConfig {
  /** Most open connections of the process; more are closed at accept. */
  readonly maxConnections: number;
  /** Most open connections from one remote IP address. */
  readonly maxConnectionsPerAddress: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS of every HTTP/2 connection. */
  readonly http2MaxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE of HTTP/2, and the largest HTTP/1 header block. */
  readonly maxHeaderListBytes: number;
  /** An HTTP/2 connection with no open stream this long is sent GOAWAY and closed. */
  readonly http2IdleTimeoutMs: number;
  /** HTTP/2 connections with open streams are pinged this often ... */
  readonly http2KeepaliveIntervalMs: number;
  /** ... and closed when the ping is not answered within this. */
  readonly http2KeepaliveTimeoutMs: number;
  /** HTTP/1: the request line and headers must arrive within this. */
  readonly headersTimeoutMs: number;
  /** HTTP/1 and HTTP/2: a request (headers and body) must arrive within this. */
  readonly requestTimeoutMs: number;
  /** Slowest accepted request body while it arrives, bytes per second (0: no check). */
  readonly minRequestBodyRate: number;
  /** Most long-lived streams (Health/Watch, WatchSessions, reflection) open on one connection. */
  readonly maxStreamsPerConnection: number;
  /** Most long-lived streams open on the process. */
  readonly maxStreams: number;
  /** Audit records of rejected requests per second; more are counted and summarized in one log line. */
  readonly rejectAuditRate: number;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Absent (and no redisSentinel): the in-process MemoryStore is used and nothing is persisted. */
  readonly redisUrl: string | undefined;
  /** The Redis primary found through Sentinel (REDIS_SENTINELS); exclusive with redisUrl. */
  readonly redisSentinel: RedisSentinelConfig | undefined;
  /** After each acknowledged write, WAIT for this many replicas (0: no WAIT). */
  readonly redisWaitReplicas: number;
  /** Bound on that WAIT; shorter than redisCommandTimeoutMs. */
  readonly redisWaitTimeoutMs: number;
  /** A Redis Cluster's seed nodes (REDIS_CLUSTER_NODES), set instead of redisUrl. */
  readonly redisCluster: RedisClusterConfig | undefined;
  /** Partitions of the Redis key layout (src/store/redis/keys.ts): 1 on one Redis, 16 by default on a cluster. */
  readonly redisPartitions: number;
  readonly keyPrefix: string;
  /** The tenant every call acts on until authentication is configured. */
  readonly defaultTenant: string;
  readonly ttl: TtlConfig;
  readonly limits: LimitsConfig;
  readonly edge: EdgeConfig;
  /** How long archived (closed or expired) sessions stay readable. */
  readonly archiveRetentionMs: number;
  /** How long a due session's keys outlive expire_time, so a late expiry scheduler can still archive it. */
  readonly expiryGraceMs: number;
  /** How often each process looks for sessions past their expire_time. */
  readonly sweepIntervalMs: number;
  /** Bound on one Redis command; past it the RPC fails with DEADLINE_EXCEEDED (sent) or UNAVAILABLE (never sent). */
  readonly redisCommandTimeoutMs: number;
  /** Start and serve on a Redis whose maxmemory-policy may evict keys (anything but noeviction). */
  readonly allowRedisEviction: boolean;
  /** Interval of heartbeat events on idle watch streams. */
  readonly watchHeartbeatMs: number;
  /** The event log keeps the last this many events (a watch resumes within them). */
  readonly watchRetentionEvents: number;
  /** The event log drops events older than this. */
  readonly watchRetentionMs: number;
  /** Events queued for one slow watcher before it is ended with RESOURCE_EXHAUSTED. */
  readonly watchQueueLimit: number;
  /** Store reads in flight at once for starting watches (snapshot listings, replays); the rest wait their turn. */
  readonly watchStartConcurrency: number;
  /** With no watcher and no in-process listener for this long, the process's event reader pauses (EventHub idleMs). */
  readonly eventReaderIdleMs: number;
  /** GetSession's in-process copies of live sessions (src/session/read-cache.ts); maxAgeMs 0: off. */
  readonly readCache: ReadCacheConfig;
  readonly logLevel: string;
  /** "pretty" (pino-pretty, for people), "json" (one JSON object per line), or "auto": pretty when stdout is a terminal. */
  readonly logFormat: "auto" | "json" | "pretty";
  /** Most tenants with a sessiond_active_sessions series (DEFAULT_TENANT included). */
  readonly metricsMaxTenants: number;
  /** OpenTelemetry: on when an OTLP endpoint is set (the SDK reads the other OTEL_* variables itself). */
  readonly tracing: TracingConfig;
  /** After SIGTERM, how long the port keeps serving while readiness already says NOT_SERVING (endpoint removal). */
  readonly shutdownDelayMs: number;
  /** Bound on a graceful shutdown: in-flight calls get this long (less a reserve for closing the store) before connections are cut. */
  readonly shutdownTimeoutMs: number;
  /** Server processes sharing the port (WORKERS; "auto" = the machine's cores). More than 1 needs Redis. */
  readonly workers: number;
  /** PEM file paths; absent: plaintext (h2c and HTTP/1.1). */
  readonly tls: TlsConfig | undefined;
  readonly auth: AuthConfig;
  readonly encryption: EncryptionConfig;
  /** Where audit records go: "stdout", "stderr", "off" or a file path. */
  readonly auditLog: string;
  /** The durable archive of ended sessions in PostgreSQL; absent: none (ended sessions live in Redis for ARCHIVE_RETENTION). */
  readonly archiveDatabase: ArchiveDatabaseConfig | undefined;
}

/** A Redis Cluster (src/store/redis/connections.ts): seed nodes, and the AUTH of every node when it requires one. */
export interface RedisClusterConfig {
  readonly nodes: readonly { readonly host: string; readonly port: number }[];
  /** REDIS_USERNAME: the ACL user (absent: the default user). */
  readonly username?: string;
  /** From REDIS_PASSWORD_FILE. */
  readonly password?: string;
  /** REDIS_CLUSTER_TLS: connect to every node over TLS, verifying it against `ca` (REDIS_CLUSTER_TLS_CA_FILE, PEM) or the system CAs. */
  readonly tls?: { readonly ca?: string };
}

/** A Redis primary found through Sentinel (src/store/redis/connections.ts). */
export interface RedisSentinelConfig {
  readonly sentinels: readonly { readonly host: string; readonly port: number }[];
  /** The master group name the sentinels monitor. */
  readonly masterName: string;
  /** From REDIS_PASSWORD_FILE: the password of the Redis servers (primary and replicas). */
  readonly password: string | undefined;
  /** From REDIS_SENTINEL_PASSWORD_FILE: the password of the sentinels. */
  readonly sentinelPassword: string | undefined;
  /** REDIS_USERNAME: the ACL user of the Redis servers (absent: the default user). */
  readonly username?: string;
  /** REDIS_SENTINEL_USERNAME: the ACL user of the sentinels. */
  readonly sentinelUsername?: string;
  /** REDIS_DB: the database number on the Redis servers (absent: 0). */
  readonly db?: number;
  /** REDIS_SENTINEL_TLS: TLS to the sentinels and the servers they name, verified against `ca` (REDIS_SENTINEL_TLS_CA_FILE) or the system CAs. */
  readonly tls?: { readonly ca?: string };
}

/** Whether the Redis store is configured (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES). */
export function usesRedis(config: Pick<Config, "redisUrl" | "redisSentinel" | "redisCluster">): boolean {
  return config.redisUrl !== undefined || config.redisSentinel !== undefined || config.redisCluster !== undefined;
}

/** The PostgreSQL archive sink and its read-back (src/archive). Needs the Redis store. */
export interface ArchiveDatabaseConfig {
  /** postgres:// or postgresql:// URL; never logged (it may carry a password). */
  readonly url: string;
  /** From ARCHIVE_DATABASE_PASSWORD_FILE: replaces the URL's password. */
  readonly password: string | undefined;
  /** Sessions that ended longer ago than this are deleted from the archive database. */
  readonly retentionMs: number;
  /** Event log entries read and written per batch. */
  readonly batchSize: number;
  /** Entries pending this long with another replica are taken over (that replica is presumed dead). */
  readonly claimIdleMs: number;
  /** Connections to the archive database per process. */
  readonly poolSize: number;
  /** Bound on connecting to the archive database and on one statement. */
  readonly timeoutMs: number;
}

export interface TracingConfig {
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; absent: tracing off. */
  readonly otlpEndpoint: string | undefined;
}

/** How callers authenticate (src/auth). Files are read at start by loadAuthenticator. */
export interface AuthConfig {
  /** JSON file of hashed API keys; absent: no API keys. */
  readonly apiKeysFile: string | undefined;
  /** Absent: JWTs are not accepted. */
  readonly jwt: JwtConfig | undefined;
  /** PEM CA bundle for client certificates (mutual TLS); needs TLS. */
  readonly clientCaFile: string | undefined;
  /** JSON file mapping client-certificate common names to tenant and scopes. */
  readonly mtlsPrincipalsFile: string | undefined;
  /** Put health, reflection and /metrics behind authentication too. */
  readonly protectOps: boolean;
  /** Listen on a non-loopback address without authentication. */
  readonly allowInsecure: boolean;
}

export interface JwtConfig {
  /** HS256 shared secret (raw text); from JWT_HS256_SECRET or JWT_HS256_SECRET_FILE. */
  readonly hs256Secret: string | undefined;
  /** JWKS (JSON) file with the RS256/ES256 public keys. */
  readonly jwksFile: string | undefined;
  readonly issuer: string;
  readonly audience: string;
  /** Claim naming the tenant (default "tenant"). */
  readonly tenantClaim: string;
  /** Claim with the scopes: a space-separated string or an array (default "scope"). */
  readonly scopesClaim: string;
  /** Claim naming the user a token is bound to (e.g. "sub"); absent: tokens are bound to no user. */
  readonly userClaim?: string;
  readonly clockToleranceMs: number;
}

export interface EncryptionConfig {
  /** From ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE (see src/crypto/keyring.ts); absent: none configured. */
  readonly keyring: Keyring | undefined;
  /** Redis without keys: store metadata and data values in plaintext instead of refusing to start. */
  readonly allowPlaintext: boolean;
  /**
   * With keys: read what was stored before (values in plaintext, identifiers not yet HMAC'd, metadata without its
   * record tag; migration, until `npm run reencrypt`); otherwise they are errors.
   */
  readonly migratePlaintext: boolean;
  /** What new values are sealed with (both are read). */
  readonly algorithm: SealAlgorithm;
}

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** Each problem on its own (one per bad variable or combination); message joins them with "; ". */
  readonly problems: readonly string[];

  constructor(problems: string | readonly string[]) {
    const list = typeof problems === "string" ? [problems] : problems;
    super(list.join("; "));
    this.problems = list;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** One environment variable: its name, default, and the description shown in docs and --help. */
export interface Setting {
  readonly env: string;
  readonly default: string;
  readonly description: string;
}

/** Every setting, in the order the README and --help list them. */
export const SETTINGS: readonly Setting[] = [
  { env: "HOST", default: "127.0.0.1", description: "Address to listen on" },
  { env: "PORT", default: "8080", description: "Port for gRPC, gRPC-Web and Connect (HTTP/1.1 and h2c)" },
  { env: "REDIS_URL", default: "", description: "Redis URL (redis://host:port/db); empty: in-process store, nothing persisted" },
  { env: "REDIS_SENTINELS", default: "", description: "Sentinels host:port,... that find the Redis primary (with REDIS_SENTINEL_MASTER; instead of REDIS_URL); the store follows a failover by itself" },
  { env: "REDIS_SENTINEL_MASTER", default: "", description: "Master group name the sentinels monitor (sentinel monitor <name> ...)" },
  { env: "REDIS_PASSWORD_FILE", default: "", description: "File holding the password of the Redis servers found through Sentinel, or of every Redis Cluster node" },
  { env: "REDIS_USERNAME", default: "", description: "ACL user of every Redis Cluster node, or of the Redis servers found through Sentinel (with REDIS_PASSWORD_FILE; empty: the default user)" },
  { env: "REDIS_DB", default: "", description: "Database number on the Redis servers found through Sentinel (empty: 0; with REDIS_URL it goes in the URL; a cluster has db 0 only)" },
  { env: "REDIS_SENTINEL_USERNAME", default: "", description: "ACL user of the sentinels (with REDIS_SENTINEL_PASSWORD_FILE; empty: the default user)" },
  { env: "REDIS_SENTINEL_TLS", default: "false", description: "Connect to the sentinels and to the Redis servers they name over TLS, verifying their certificates" },
  { env: "REDIS_SENTINEL_TLS_CA_FILE", default: "", description: "PEM CA bundle that the sentinels' and servers' certificates must chain to (with REDIS_SENTINEL_TLS; empty: the system CAs)" },
  { env: "REDIS_CLUSTER_TLS", default: "false", description: "Connect to every Redis Cluster node over TLS (nodes with tls-port and tls-cluster yes), verifying their certificates" },
  { env: "REDIS_CLUSTER_TLS_CA_FILE", default: "", description: "PEM CA bundle that Redis Cluster node certificates must chain to (with REDIS_CLUSTER_TLS; empty: the system CAs)" },
  { env: "REDIS_SENTINEL_PASSWORD_FILE", default: "", description: "File holding the password of the sentinels" },
  {
    env: "REDIS_WAIT_REPLICAS",
    default: "0",
    description: "After each acknowledged write, wait until this many replicas have it (Redis WAIT); fewer within REDIS_WAIT_TIMEOUT: the call fails with UNAVAILABLE",
  },
  { env: "REDIS_WAIT_TIMEOUT", default: "500ms", description: "Bound on that wait for replicas; must be shorter than REDIS_COMMAND_TIMEOUT" },
  { env: "REDIS_CLUSTER_NODES", default: "", description: "Redis Cluster seed nodes, host:port,host:port,... (any of its nodes); set instead of REDIS_URL" },
  {
    env: "REDIS_PARTITIONS",
    default: "",
    description: "Partitions of the Redis key layout, 1 to 1024, fixed for the life of the data; empty: 1 with REDIS_URL, 16 with REDIS_CLUSTER_NODES (at least 2 there)",
  },
  { env: "KEY_PREFIX", default: "sd:", description: "Prefix of every Redis key" },
  { env: "DEFAULT_TENANT", default: "default", description: "Tenant of every call until authentication is configured" },
  { env: "SESSION_TTL_DEFAULT", default: "1h", description: "TTL of a session created without one" },
  { env: "SESSION_TTL_MIN", default: "1s", description: "Smallest TTL a create or extend may ask for" },
  { env: "SESSION_TTL_MAX", default: "24h", description: "Largest TTL a create or extend may ask for" },
  { env: "ARCHIVE_RETENTION", default: "7d", description: "How long closed and expired sessions stay readable" },
  { env: "EXPIRY_GRACE", default: "1h", description: "How long a due session's keys outlive expire_time for a late expiry scheduler" },
  { env: "SWEEP_INTERVAL", default: "250ms", description: "Longest sleep of the expiry scheduler between looks at the due queue (it wakes at each due time)" },
  { env: "REDIS_COMMAND_TIMEOUT", default: "2s", description: "Bound on one Redis call; past it RPCs fail with UNAVAILABLE" },
  { env: "WATCH_HEARTBEAT", default: "15s", description: "Heartbeat interval on idle watch streams" },
  { env: "WATCH_RETENTION_EVENTS", default: "100000", description: "Events kept in the event log for resuming watches (by count)" },
  { env: "WATCH_RETENTION", default: "1h", description: "Events kept in the event log for resuming watches (by age)" },
  { env: "WATCH_QUEUE_LIMIT", default: "1000", description: "Events queued for one slow watcher before it is ended with RESOURCE_EXHAUSTED" },
  {
    env: "READ_CACHE_MAX_AGE",
    default: "0s",
    description:
      "How long GetSession may answer from this process's copy of a live session (0s: off, every get reads Redis); a write through any process reaches it through the event log; at most 60s",
  },
  { env: "READ_CACHE_ENTRIES", default: "10000", description: "Most sessions one process keeps copies of for READ_CACHE_MAX_AGE" },
  { env: "WATCH_START_CONCURRENCY", default: "32", description: "Store reads in flight for starting watches (snapshots, replays); more watches starting at once wait their turn" },
  {
    env: "EVENT_READER_IDLE",
    default: "10s",
    description: "A process whose event reader has had no watcher and no in-process listener (the read cache) this long stops reading the event log until a watch starts, and only looks at it once a second for a reset (data loss)",
  },
  { env: "MAX_REQUEST_BYTES", default: "1048576", description: "Largest request message" },
  { env: "MAX_METADATA_BYTES", default: "16384", description: "Largest metadata object (as JSON)" },
  { env: "MAX_DATA_KEY_LENGTH", default: "256", description: "Longest data key" },
  { env: "MAX_DATA_VALUE_BYTES", default: "65536", description: "Largest data value (as JSON)" },
  { env: "MAX_DATA_KEYS", default: "1000", description: "Most data keys per session" },
  { env: "DEFAULT_PAGE_SIZE", default: "100", description: "ListSessions page size when none is asked" },
  { env: "MAX_PAGE_SIZE", default: "1000", description: "Largest ListSessions page size" },
  { env: "LOG_LEVEL", default: "info", description: `Log level (${LOG_LEVELS.join(", ")})` },
  { env: "LOG_FORMAT", default: "auto", description: "Log lines: json, pretty (readable, colored) or auto (pretty when stdout is a terminal)" },
  { env: "METRICS_MAX_TENANTS", default: "50", description: "Most tenants with a sessiond_active_sessions series: DEFAULT_TENANT and the most recently active ones" },
  { env: "OTEL_EXPORTER_OTLP_ENDPOINT", default: "", description: "OTLP/HTTP endpoint (http://collector:4318): export trace spans there; empty: no tracing" },
  { env: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default: "", description: "Full OTLP/HTTP traces URL (http://collector:4318/v1/traces); overrides OTEL_EXPORTER_OTLP_ENDPOINT for traces" },
  { env: "OTEL_EXPORTER_OTLP_PROTOCOL", default: "http/protobuf", description: "OTLP protocol; only http/protobuf is supported" },
  { env: "SHUTDOWN_TIMEOUT", default: "10s", description: "Bound on a graceful shutdown (SIGTERM, SIGINT) after SHUTDOWN_DELAY, before the process exits" },
  { env: "SHUTDOWN_DELAY", default: "5s", description: "After SIGTERM, keep serving this long with readiness NOT_SERVING before draining (0s: drain at once)" },
  { env: "MAX_CONNECTIONS", default: "4096", description: "Most open connections; more are closed at accept" },
  { env: "MAX_CONNECTIONS_PER_ADDRESS", default: "512", description: "Most open connections from one remote IP address" },
  { env: "HTTP2_MAX_CONCURRENT_STREAMS", default: "256", description: "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection" },
  { env: "MAX_HEADER_LIST_BYTES", default: "16384", description: "Largest header block (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE, HTTP/1 header size)" },
  { env: "HTTP2_IDLE_TIMEOUT", default: "16m", description: "An HTTP/2 connection with no open stream this long is closed (GOAWAY)" },
  { env: "HTTP2_KEEPALIVE_INTERVAL", default: "30s", description: "Ping HTTP/2 connections that have open streams this often" },
  { env: "HTTP2_KEEPALIVE_TIMEOUT", default: "20s", description: "Close an HTTP/2 connection whose ping is not answered within this" },
  { env: "HEADERS_TIMEOUT", default: "10s", description: "HTTP/1: request line and headers must arrive within this" },
  { env: "REQUEST_TIMEOUT", default: "30s", description: "A whole request (headers and body) must arrive within this (HTTP/1 and HTTP/2)" },
  { env: "MIN_REQUEST_BODY_RATE", default: "1024", description: "Slowest request body accepted while it arrives, bytes/s over 2 s windows, per HTTP/1 connection and per HTTP/2 stream (0: no check)" },
  { env: "MAX_STREAMS_PER_CONNECTION", default: "200", description: "Most long-lived streams (Health/Watch, WatchSessions, reflection) per connection" },
  { env: "MAX_STREAMS", default: "10000", description: "Most long-lived streams (Health/Watch, WatchSessions, reflection) per process" },
  { env: "REJECT_AUDIT_RATE", default: "50", description: "Audit records of rejected requests per second; the rest are counted (metric, one summary log line)" },
  { env: "WORKERS", default: "1", description: "Server processes on the one port (node:cluster); auto: one per core. More than 1 needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES" },
  { env: "TLS_CERT_FILE", default: "", description: "PEM certificate chain; with TLS_KEY_FILE: serve TLS (ALPN h2, http/1.1) instead of plaintext" },
  { env: "TLS_KEY_FILE", default: "", description: "PEM private key of TLS_CERT_FILE" },
  { env: "MAX_DATA_BYTES", default: "8388608", description: "Most bytes of data values per session, as stored (encrypted)" },
  { env: "MAX_SESSIONS_PER_USER", default: "1000", description: "Most live sessions per user and tenant (0: no cap)" },
  { env: "MAX_SESSIONS_PER_TENANT", default: "1000000", description: "Most live sessions per tenant (0: no cap); a create beyond it is RESOURCE_EXHAUSTED" },
  {
    env: "MAX_DATA_SOURCES_PER_TENANT",
    default: "100000",
    description: "Most data sources with live sessions per tenant (0: no cap); a create or update adding one beyond it is RESOURCE_EXHAUSTED",
  },
  { env: "SESSIONS_PER_USER_POLICY", default: "reject", description: "Create beyond MAX_SESSIONS_PER_USER: reject (RESOURCE_EXHAUSTED) or close_oldest" },
  { env: "MAX_WATCHERS_PER_PRINCIPAL", default: "16", description: "Most concurrent WatchSessions streams per principal and process" },
  { env: "API_KEYS_FILE", default: "", description: "JSON file of API keys as SHA-256 hashes with tenant and scopes" },
  { env: "JWT_HS256_SECRET", default: "", description: "Shared secret for HS256 JWTs (or JWT_HS256_SECRET_FILE)" },
  { env: "JWT_HS256_SECRET_FILE", default: "", description: "File holding the HS256 JWT secret" },
  { env: "JWT_JWKS_FILE", default: "", description: "JWKS file with the public keys of RS256/ES256 JWTs" },
  { env: "JWT_ISSUER", default: "", description: "Required iss of JWTs (required when JWTs are configured)" },
  { env: "JWT_AUDIENCE", default: "", description: "Required aud of JWTs (required when JWTs are configured)" },
  { env: "JWT_TENANT_CLAIM", default: "tenant", description: "JWT claim naming the caller's tenant" },
  { env: "JWT_SCOPES_CLAIM", default: "scope", description: "JWT claim with the scopes (space-separated string or array)" },
  { env: "JWT_USER_CLAIM", default: "", description: "JWT claim binding a token to one user (e.g. sub); empty: tokens act for every user of their tenant" },
  { env: "JWT_CLOCK_TOLERANCE", default: "30s", description: "Allowed clock skew for JWT exp and nbf" },
  { env: "TLS_CLIENT_CA_FILE", default: "", description: "PEM CA bundle: ask for client certificates (mutual TLS) and verify them" },
  { env: "MTLS_PRINCIPALS_FILE", default: "", description: "JSON file mapping client-certificate common names to tenant and scopes" },
  { env: "AUTH_PROTECT_OPS", default: "false", description: "Put health, reflection and /metrics behind authentication too" },
  { env: "ALLOW_INSECURE", default: "false", description: "Allow a non-loopback HOST with no authentication configured" },
  { env: "ENCRYPTION_KEYS", default: "", description: "Encryption keys id:base64key,... (first = primary) for metadata and data values" },
  { env: "ENCRYPTION_KEYS_FILE", default: "", description: "File with the encryption keys (same form, one per line)" },
  {
    env: "ENCRYPTION_CIPHER",
    default: "chacha20-poly1305",
    description:
      "What new values are sealed with: chacha20-poly1305 (libsodium) or aes-256-gcm (node:crypto; FIPS-approved, and what versions before ENCRYPTION_CIPHER wrote). Both are always read",
  },
  { env: "ALLOW_PLAINTEXT", default: "false", description: "Allow Redis without encryption keys (values stored in plaintext)" },
  {
    env: "ENCRYPTION_MIGRATE_PLAINTEXT",
    default: "false",
    description:
      "With encryption keys: still read what was stored before (plaintext values, identifiers not yet HMAC'd, metadata without its record tag) until `npm run reencrypt` sealed, tagged and retokened it; otherwise it is refused",
  },
  { env: "ALLOW_REDIS_EVICTION", default: "false", description: "Start and report ready on a Redis whose maxmemory-policy is not noeviction (it can delete sessions silently)" },
  { env: "AUDIT_LOG", default: "stdout", description: "Audit records: stdout, stderr, off or a file path" },
  { env: "ARCHIVE_DATABASE_URL", default: "", description: "PostgreSQL URL (postgres://user@host:port/db) of the durable archive of ended sessions; needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES" },
  { env: "ARCHIVE_DATABASE_PASSWORD_FILE", default: "", description: "File holding the archive database password (replaces the URL's)" },
  { env: "ARCHIVE_DB_RETENTION", default: "365d", description: "How long ended sessions stay in the archive database (deleted in batches after)" },
  { env: "ARCHIVE_BATCH_SIZE", default: "500", description: "Event log entries the archive sink reads and writes per batch" },
  { env: "ARCHIVE_CLAIM_IDLE", default: "30s", description: "Archive entries pending this long with a replica are taken over by another (the first is presumed dead)" },
  { env: "ARCHIVE_DB_POOL_SIZE", default: "4", description: "Connections to the archive database per process" },
  { env: "ARCHIVE_DB_TIMEOUT", default: "5s", description: "Bound on connecting to the archive database and on one statement" },
];

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses "250ms", "30s", "5m", "1h", "7d". A bare number is refused (except 0):
 * "15" could mean seconds or milliseconds, and guessing wrong is a 1000x mistake.
 */
export function parseDurationMs(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === "0") return 0;
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(trimmed);
  if (match === null) return undefined;
  const unit = DURATION_UNITS[match[2] ?? ""] ?? 1;
  const value = Number(match[1]) * unit;
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

/**
 * Reads settings and collects their problems: a bad value records a message and
 * yields the default (or a placeholder) so reading goes on; loadConfig throws
 * them all together at the end.
 */
class Reader {
  readonly problems: string[] = [];

  constructor(private readonly env: Env) {}

  /** Records a problem; reading goes on. */
  fail(message: string): void {
    this.problems.push(message);
  }

  /** Records a problem unless the condition holds. */
  check(ok: boolean, message: string): void {
    if (!ok) this.fail(message);
  }

  /** Runs a step that may throw ConfigError (a file that cannot be read), recording its problem and returning the fallback. */
  attempt<T>(step: () => T, fallback: T): T {
    try {
      return step();
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      this.problems.push(...error.problems);
      return fallback;
    }
  }

  raw(name: string): string {
    const setting = SETTINGS.find((s) => s.env === name);
    if (setting === undefined) throw new Error(`unknown setting ${name}`);
    const value = this.env[name];
    return value === undefined || value === "" ? setting.default : value;
  }

  duration(name: string, minMs = 1): number {
    const text = this.raw(name);
    const ms = parseDurationMs(text);
    if (ms === undefined && /^\s*\d+(?:\.\d+)?\s*$/.test(text)) {
      this.fail(`${name}=${JSON.stringify(text)} needs a unit (ms, s, m, h or d), e.g. ${text.trim()}s or ${text.trim()}ms`);
      return this.fallbackDuration(name);
    }
    if (ms === undefined || ms < minMs) {
      this.fail(`${name}=${JSON.stringify(text)} is not a duration of at least ${minMs} ms (examples: 250ms, 30s, 5m, 1h, 7d)`);
      return this.fallbackDuration(name);
    }
    return ms;
  }

  /** The setting's default, so checks that combine settings still run on something sensible. */
  private fallbackDuration(name: string): number {
    return parseDurationMs(SETTINGS.find((s) => s.env === name)?.default ?? "") ?? 1000;
  }

  boolean(name: string): boolean {
    const text = this.raw(name).trim().toLowerCase();
    if (text === "true" || text === "1") return true;
    if (text === "false" || text === "0") return false;
    this.fail(`${name}=${JSON.stringify(this.raw(name))} must be true or false`);
    return false;
  }

  /** The variable's value, or undefined when it is empty or unset. */
  optional(name: string): string | undefined {
    const value = this.raw(name);
    return value === "" ? undefined : value;
  }

  integer(name: string, min: number, max: number): number {
    const text = this.raw(name);
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.fail(`${name}=${JSON.stringify(text)} must be a whole number from ${min} to ${max}`);
      const fallback = Number(SETTINGS.find((s) => s.env === name)?.default);
      return Number.isSafeInteger(fallback) && fallback >= min && fallback <= max ? fallback : min;
    }
    return n;
  }
}

/** Reads and validates the configuration. Throws one ConfigError listing every bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const config = readConfig(r);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

function readConfig(r: Reader): Config {
  const redisUrl = r.raw("REDIS_URL");
  if (redisUrl !== "" && !/^rediss?:\/\//.test(redisUrl)) {
    // The URL is not echoed: it may carry a password.
    r.fail("REDIS_URL must start with redis:// or rediss://");
  }
  const redisCluster = clusterNodes(r);
  if (redisCluster !== undefined && redisUrl !== "") r.fail("REDIS_URL and REDIS_CLUSTER_NODES are alternatives: set one");
  const redisPartitions = partitions(r, redisCluster !== undefined);
  const redisSentinel = sentinelConfig(r, redisUrl !== "", redisCluster !== undefined);
  if (redisCluster !== undefined && redisSentinel !== undefined) r.fail("REDIS_SENTINELS and REDIS_CLUSTER_NODES are alternatives: set one");
  const redis = redisUrl !== "" || redisSentinel !== undefined || redisCluster !== undefined;
  const redisCommandTimeoutMs = r.duration("REDIS_COMMAND_TIMEOUT", 10);
  const redisWaitReplicas = r.integer("REDIS_WAIT_REPLICAS", 0, 100);
  const redisWaitTimeoutMs = r.duration("REDIS_WAIT_TIMEOUT", 1);
  if (redisWaitReplicas > 0 && !redis) r.fail("REDIS_WAIT_REPLICAS needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES");
  if (redisWaitReplicas > 0 && redisWaitTimeoutMs >= redisCommandTimeoutMs) {
    // The WAIT and the write it confirms share one call's deadline.
    r.fail(`REDIS_WAIT_TIMEOUT (${redisWaitTimeoutMs} ms) must be shorter than REDIS_COMMAND_TIMEOUT (${redisCommandTimeoutMs} ms)`);
  }
  const tenant = r.raw("DEFAULT_TENANT");
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(tenant)) {
    r.fail(`DEFAULT_TENANT=${JSON.stringify(tenant)} must be 1-64 letters, digits, '_' or '-'`);
  }
  const logLevel = r.raw("LOG_LEVEL");
  if (!LOG_LEVELS.includes(logLevel)) {
    r.fail(`LOG_LEVEL=${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(", ")}`);
  }

  const ttl: TtlConfig = {
    defaultMs: r.duration("SESSION_TTL_DEFAULT"),
    minMs: r.duration("SESSION_TTL_MIN"),
    maxMs: r.duration("SESSION_TTL_MAX"),
  };
  if (!(ttl.minMs <= ttl.defaultMs && ttl.defaultMs <= ttl.maxMs)) {
    r.fail(
      `session TTLs must satisfy SESSION_TTL_MIN <= SESSION_TTL_DEFAULT <= SESSION_TTL_MAX (got ${ttl.minMs} ms, ${ttl.defaultMs} ms, ${ttl.maxMs} ms)`,
    );
  }

  const limits: LimitsConfig = {
    maxRequestBytes: r.integer("MAX_REQUEST_BYTES", 1024, 64 * 1024 * 1024),
    maxMetadataBytes: r.integer("MAX_METADATA_BYTES", 2, 16 * 1024 * 1024),
    maxDataKeyLength: r.integer("MAX_DATA_KEY_LENGTH", 1, 4096),
    maxDataValueBytes: r.integer("MAX_DATA_VALUE_BYTES", 1, 16 * 1024 * 1024),
    maxDataKeys: r.integer("MAX_DATA_KEYS", 1, 1_000_000),
    maxDataBytes: r.integer("MAX_DATA_BYTES", 1, 4 * 1024 * 1024 * 1024),
    maxSessionsPerUser: r.integer("MAX_SESSIONS_PER_USER", 0, 10_000_000),
    sessionsPerUserPolicy: sessionsPerUserPolicy(r),
    maxSessionsPerTenant: r.integer("MAX_SESSIONS_PER_TENANT", 0, 1_000_000_000),
    maxDataSourcesPerTenant: r.integer("MAX_DATA_SOURCES_PER_TENANT", 0, 100_000_000),
    maxWatchersPerPrincipal: r.integer("MAX_WATCHERS_PER_PRINCIPAL", 1, 100_000),
    defaultPageSize: r.integer("DEFAULT_PAGE_SIZE", 1, 100_000),
    maxPageSize: r.integer("MAX_PAGE_SIZE", 1, 100_000),
  };
  if (limits.defaultPageSize > limits.maxPageSize) {
    r.fail(`DEFAULT_PAGE_SIZE (${limits.defaultPageSize}) must not exceed MAX_PAGE_SIZE (${limits.maxPageSize})`);
  }

  const edge = edgeConfig(r);

  const certFile = r.raw("TLS_CERT_FILE");
  const keyFile = r.raw("TLS_KEY_FILE");
  if ((certFile === "") !== (keyFile === "")) {
    r.fail(`TLS_CERT_FILE and TLS_KEY_FILE must be set together (got ${certFile === "" ? "only TLS_KEY_FILE" : "only TLS_CERT_FILE"})`);
  }

  return {
    host: r.raw("HOST"),
    port: r.integer("PORT", 0, 65535),
    redisUrl: redisUrl === "" ? undefined : redisUrl,
    redisCluster,
    redisPartitions,
    redisSentinel,
    redisWaitReplicas,
    redisWaitTimeoutMs,
    keyPrefix: r.raw("KEY_PREFIX"),
    defaultTenant: tenant,
    ttl,
    limits,
    edge,
    archiveRetentionMs: r.duration("ARCHIVE_RETENTION", 1000),
    expiryGraceMs: r.duration("EXPIRY_GRACE", 1000),
    sweepIntervalMs: r.duration("SWEEP_INTERVAL", 10),
    redisCommandTimeoutMs,
    allowRedisEviction: r.boolean("ALLOW_REDIS_EVICTION"),
    watchHeartbeatMs: r.duration("WATCH_HEARTBEAT", 10),
    watchRetentionEvents: r.integer("WATCH_RETENTION_EVENTS", 1, 100_000_000),
    watchRetentionMs: r.duration("WATCH_RETENTION", 1000),
    watchQueueLimit: r.integer("WATCH_QUEUE_LIMIT", 1, 1_000_000),
    watchStartConcurrency: r.integer("WATCH_START_CONCURRENCY", 1, 10_000),
    eventReaderIdleMs: r.duration("EVENT_READER_IDLE", 100),
    readCache: readCacheConfig(r),
    logLevel,
    logFormat: logFormat(r),
    metricsMaxTenants: r.integer("METRICS_MAX_TENANTS", 1, 10_000),
    tracing: tracingConfig(r),
    shutdownTimeoutMs: r.duration("SHUTDOWN_TIMEOUT", 100),
    shutdownDelayMs: r.duration("SHUTDOWN_DELAY", 0),
    workers: workers(r, redis),
    tls: certFile === "" ? undefined : { certFile, keyFile },
    auth: authConfig(r),
    encryption: encryptionConfig(r),
    auditLog: r.raw("AUDIT_LOG"),
    archiveDatabase: archiveDatabaseConfig(r, redis),
  };
}

/** REDIS_SENTINELS and its companions; undefined when REDIS_SENTINELS is empty. */
function sentinelConfig(r: Reader, withUrl: boolean, withCluster: boolean): RedisSentinelConfig | undefined {
  const list = r.optional("REDIS_SENTINELS");
  const masterName = r.optional("REDIS_SENTINEL_MASTER");
  const passwordFile = r.optional("REDIS_PASSWORD_FILE");
  const sentinelPasswordFile = r.optional("REDIS_SENTINEL_PASSWORD_FILE");
  const sentinelUsername = r.optional("REDIS_SENTINEL_USERNAME");
  const dbText = r.optional("REDIS_DB");
  const tls = r.boolean("REDIS_SENTINEL_TLS");
  const caFile = r.optional("REDIS_SENTINEL_TLS_CA_FILE");
  if (list === undefined) {
    const alone = [
      ["REDIS_SENTINEL_MASTER", masterName],
      ["REDIS_PASSWORD_FILE", withCluster ? undefined : passwordFile],
      ["REDIS_SENTINEL_PASSWORD_FILE", sentinelPasswordFile],
      ["REDIS_SENTINEL_USERNAME", sentinelUsername],
      ["REDIS_DB", dbText],
      ["REDIS_SENTINEL_TLS", tls ? "true" : undefined],
      ["REDIS_SENTINEL_TLS_CA_FILE", caFile],
    ] as const;
    for (const [name, value] of alone) {
      if (value === undefined) continue;
      const hint =
        name === "REDIS_PASSWORD_FILE"
          ? " or REDIS_CLUSTER_NODES (with REDIS_URL, the password goes in the URL)"
          : name === "REDIS_DB"
            ? " (with REDIS_URL, the db goes in the URL: redis://host:port/<db>)"
            : name.startsWith("REDIS_SENTINEL_TLS")
              ? " (with REDIS_URL, use rediss://)"
              : "";
      r.fail(`${name} needs REDIS_SENTINELS${hint}`);
    }
    return undefined;
  }
  if (caFile !== undefined && !tls) r.fail("REDIS_SENTINEL_TLS_CA_FILE needs REDIS_SENTINEL_TLS=true");
  if (sentinelUsername !== undefined && sentinelPasswordFile === undefined) r.fail("REDIS_SENTINEL_USERNAME needs REDIS_SENTINEL_PASSWORD_FILE (AUTH takes a user and its password)");
  const username = r.optional("REDIS_USERNAME");
  if (username !== undefined && passwordFile === undefined) r.fail("REDIS_USERNAME needs REDIS_PASSWORD_FILE (AUTH takes a user and its password)");
  const db = dbText === undefined ? undefined : r.integer("REDIS_DB", 0, 65535);
  const ca = caFile === undefined ? undefined : r.attempt(() => readSecretFile("REDIS_SENTINEL_TLS_CA_FILE", caFile), undefined);
  if (withUrl) r.fail("REDIS_URL and REDIS_SENTINELS are both set: use one (with Sentinel, the sentinels name the primary)");
  const sentinels: { host: string; port: number }[] = [];
  for (const item of list.split(",")) {
    const match = /^\s*(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})\s*$/.exec(item);
    const port = Number(match?.[2]);
    if (match === null || match[1] === undefined || !(port >= 1 && port <= 65535)) {
      r.fail(`REDIS_SENTINELS: ${JSON.stringify(item.trim().slice(0, 100))} is not host:port (a comma-separated list, e.g. sentinel-1:26379,sentinel-2:26379)`);
      continue;
    }
    sentinels.push({ host: match[1].replace(/^\[|\]$/g, ""), port });
  }
  if (masterName === undefined) r.fail("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the name in `sentinel monitor <name> ...`)");
  return {
    sentinels,
    masterName: masterName ?? "",
    password: passwordFile === undefined ? undefined : r.attempt(() => readSecretFile("REDIS_PASSWORD_FILE", passwordFile), undefined),
    sentinelPassword: sentinelPasswordFile === undefined ? undefined : r.attempt(() => readSecretFile("REDIS_SENTINEL_PASSWORD_FILE", sentinelPasswordFile), undefined),
    ...(username === undefined ? {} : { username }),
    ...(sentinelUsername === undefined ? {} : { sentinelUsername }),
    ...(db === undefined || db === 0 ? {} : { db }),
    ...(tls ? { tls: ca === undefined ? {} : { ca } } : {}),
  };
}

function archiveDatabaseConfig(r: Reader, redis: boolean): ArchiveDatabaseConfig | undefined {
  const url = r.optional("ARCHIVE_DATABASE_URL");
  const passwordFile = r.optional("ARCHIVE_DATABASE_PASSWORD_FILE");
  if (url === undefined) {
    if (passwordFile !== undefined) r.fail("ARCHIVE_DATABASE_PASSWORD_FILE needs ARCHIVE_DATABASE_URL");
    return undefined;
  }
  // The URL is not echoed: it may carry a password.
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed === undefined || (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") || parsed.hostname === "") {
    r.fail("ARCHIVE_DATABASE_URL must be a postgres:// or postgresql:// URL with a host");
  }
  if (!redis) {
    r.fail("ARCHIVE_DATABASE_URL needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES: the archive sink reads the Redis event log through a consumer group");
  }
  return {
    url,
    password: passwordFile === undefined ? undefined : r.attempt(() => readSecretFile("ARCHIVE_DATABASE_PASSWORD_FILE", passwordFile), undefined),
    retentionMs: r.duration("ARCHIVE_DB_RETENTION", 3_600_000),
    batchSize: r.integer("ARCHIVE_BATCH_SIZE", 1, 10_000),
    claimIdleMs: r.duration("ARCHIVE_CLAIM_IDLE", 100),
    poolSize: r.integer("ARCHIVE_DB_POOL_SIZE", 1, 100),
    timeoutMs: r.duration("ARCHIVE_DB_TIMEOUT", 100),
  };
}

function readCacheConfig(r: Reader): ReadCacheConfig {
  const maxAgeMs = r.duration("READ_CACHE_MAX_AGE", 0);
  r.check(maxAgeMs <= READ_CACHE_MAX_AGE_LIMIT_MS, `READ_CACHE_MAX_AGE=${JSON.stringify(r.raw("READ_CACHE_MAX_AGE"))} is more than 60s`);
  return { maxAgeMs, entries: r.integer("READ_CACHE_ENTRIES", 1, 1_000_000) };
}

function logFormat(r: Reader): "auto" | "json" | "pretty" {
  const format = r.raw("LOG_FORMAT");
  if (format !== "auto" && format !== "json" && format !== "pretty") {
    r.fail(`LOG_FORMAT=${JSON.stringify(format)} must be auto, json or pretty`);
    return "auto";
  }
  return format;
}

function tracingConfig(r: Reader): TracingConfig {
  const protocol = r.raw("OTEL_EXPORTER_OTLP_PROTOCOL");
  r.check(protocol === "http/protobuf", `OTEL_EXPORTER_OTLP_PROTOCOL=${JSON.stringify(protocol)} is not supported: use http/protobuf (port 4318 of a collector)`);
  let otlpEndpoint: string | undefined;
  for (const name of ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]) {
    const url = r.optional(name);
    if (url === undefined) continue;
    // Not echoed: collectors' URLs may carry credentials.
    r.check(/^https?:\/\/[^\s]+$/.test(url) && URL.canParse(url), `${name} must be an http:// or https:// URL`);
    otlpEndpoint = url;
  }
  return { otlpEndpoint };
}

function edgeConfig(r: Reader): EdgeConfig {
  const edge: EdgeConfig = {
    maxConnections: r.integer("MAX_CONNECTIONS", 1, 1_000_000),
    maxConnectionsPerAddress: r.integer("MAX_CONNECTIONS_PER_ADDRESS", 1, 1_000_000),
    http2MaxConcurrentStreams: r.integer("HTTP2_MAX_CONCURRENT_STREAMS", 1, 100_000),
    maxHeaderListBytes: r.integer("MAX_HEADER_LIST_BYTES", 1024, 1024 * 1024),
    http2IdleTimeoutMs: r.duration("HTTP2_IDLE_TIMEOUT", 100),
    http2KeepaliveIntervalMs: r.duration("HTTP2_KEEPALIVE_INTERVAL", 100),
    http2KeepaliveTimeoutMs: r.duration("HTTP2_KEEPALIVE_TIMEOUT", 100),
    headersTimeoutMs: r.duration("HEADERS_TIMEOUT", 100),
    requestTimeoutMs: r.duration("REQUEST_TIMEOUT", 100),
    minRequestBodyRate: r.integer("MIN_REQUEST_BODY_RATE", 0, 1_000_000_000),
    maxStreamsPerConnection: r.integer("MAX_STREAMS_PER_CONNECTION", 1, 1_000_000),
    maxStreams: r.integer("MAX_STREAMS", 1, 10_000_000),
    rejectAuditRate: r.integer("REJECT_AUDIT_RATE", 0, 1_000_000),
  };
  if (edge.maxConnectionsPerAddress > edge.maxConnections) {
    r.fail(`MAX_CONNECTIONS_PER_ADDRESS (${edge.maxConnectionsPerAddress}) must not exceed MAX_CONNECTIONS (${edge.maxConnections})`);
  }
  if (edge.headersTimeoutMs > edge.requestTimeoutMs) {
    r.fail(`HEADERS_TIMEOUT (${edge.headersTimeoutMs} ms) must not exceed REQUEST_TIMEOUT (${edge.requestTimeoutMs} ms)`);
  }
  if (edge.maxStreamsPerConnection > edge.maxStreams) {
    r.fail(`MAX_STREAMS_PER_CONNECTION (${edge.maxStreamsPerConnection}) must not exceed MAX_STREAMS (${edge.maxStreams})`);
  }
  return edge;
}

/** REDIS_CLUSTER_NODES: host:port pairs (IPv6 hosts in brackets), with REDIS_USERNAME and REDIS_PASSWORD_FILE; undefined when unset. */
function clusterNodes(r: Reader): RedisClusterConfig | undefined {
  const text = r.raw("REDIS_CLUSTER_NODES").trim();
  const username = r.optional("REDIS_USERNAME");
  const tls = r.boolean("REDIS_CLUSTER_TLS");
  const caFile = r.optional("REDIS_CLUSTER_TLS_CA_FILE");
  if (text === "") {
    if (username !== undefined && r.optional("REDIS_SENTINELS") === undefined) r.fail("REDIS_USERNAME needs REDIS_CLUSTER_NODES or REDIS_SENTINELS (with REDIS_URL, the user goes in the URL)");
    if (tls || caFile !== undefined) r.fail("REDIS_CLUSTER_TLS and REDIS_CLUSTER_TLS_CA_FILE need REDIS_CLUSTER_NODES (with REDIS_URL, use rediss://)");
    return undefined;
  }
  if (caFile !== undefined && !tls) r.fail("REDIS_CLUSTER_TLS_CA_FILE needs REDIS_CLUSTER_TLS=true");
  const ca = caFile === undefined ? undefined : r.attempt(() => readSecretFile("REDIS_CLUSTER_TLS_CA_FILE", caFile), undefined);
  const nodes: { host: string; port: number }[] = [];
  for (const item of text.split(",")) {
    const match = /^\s*(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\s*$/.exec(item);
    const port = Number(match?.[2]);
    if (match === null || port < 1 || port > 65535) {
      r.fail("REDIS_CLUSTER_NODES must be host:port pairs separated by commas (e.g. 10.0.0.1:7000,10.0.0.2:7000)");
      return undefined;
    }
    nodes.push({ host: (match[1] as string).replace(/^\[|\]$/g, ""), port });
  }
  const passwordFile = r.optional("REDIS_PASSWORD_FILE");
  if (username !== undefined && passwordFile === undefined) r.fail("REDIS_USERNAME needs REDIS_PASSWORD_FILE (AUTH takes a user and its password)");
  const password = passwordFile === undefined ? undefined : r.attempt(() => readSecretFile("REDIS_PASSWORD_FILE", passwordFile), undefined);
  return {
    nodes,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...(tls ? { tls: ca === undefined ? {} : { ca } } : {}),
  };
}

/** Upper bound of REDIS_PARTITIONS (MAX_PARTITIONS in src/store/redis/keys.ts). */
const MAX_REDIS_PARTITIONS = 1024;
/** REDIS_PARTITIONS on a cluster when unset: a few partitions per primary for clusters of up to about eight primaries. */
const DEFAULT_CLUSTER_PARTITIONS = 16;

function partitions(r: Reader, cluster: boolean): number {
  if (r.raw("REDIS_PARTITIONS").trim() === "") return cluster ? DEFAULT_CLUSTER_PARTITIONS : 1;
  const n = r.integer("REDIS_PARTITIONS", 1, MAX_REDIS_PARTITIONS);
  if (cluster && n < 2) r.fail("REDIS_PARTITIONS must be at least 2 with REDIS_CLUSTER_NODES: one partition is one hash slot, on one primary");
  return n;
}

/** Most worker processes: far beyond any core count we run on, low enough to stop a typo. */
const MAX_WORKERS = 256;

function workers(r: Reader, redis: boolean): number {
  const n = r.raw("WORKERS") === "auto" ? availableParallelism() : r.integer("WORKERS", 1, MAX_WORKERS);
  // Each worker has its own in-process store: they would not share sessions.
  if (n > 1 && !redis) r.fail(`WORKERS=${r.raw("WORKERS")} (${n} processes) needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES: the in-process store is not shared between processes`);
  return n;
}

function sessionsPerUserPolicy(r: Reader): "reject" | "close_oldest" {
  const policy = r.raw("SESSIONS_PER_USER_POLICY");
  if (policy !== "reject" && policy !== "close_oldest") {
    r.fail(`SESSIONS_PER_USER_POLICY=${JSON.stringify(policy)} must be reject or close_oldest`);
    return "reject";
  }
  return policy;
}

function userClaim(r: Reader): { userClaim?: string } {
  const claim = r.optional("JWT_USER_CLAIM");
  if (claim === undefined) return {};
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(claim)) {
    r.fail(`JWT_USER_CLAIM=${JSON.stringify(claim)} must be a claim name of 1-64 letters, digits, '_', '.', ':' or '-'`);
    return {};
  }
  return { userClaim: claim };
}

function authConfig(r: Reader): AuthConfig {
  const secret = r.optional("JWT_HS256_SECRET");
  const secretFile = r.optional("JWT_HS256_SECRET_FILE");
  if (secret !== undefined && secretFile !== undefined) {
    r.fail("JWT_HS256_SECRET and JWT_HS256_SECRET_FILE are both set: use one");
  }
  const hs256Secret = secretFile === undefined ? secret : r.attempt(() => readSecretFile("JWT_HS256_SECRET_FILE", secretFile), undefined);
  if (hs256Secret !== undefined && Buffer.byteLength(hs256Secret) < 32) {
    r.fail(`${secretFile === undefined ? "JWT_HS256_SECRET" : "JWT_HS256_SECRET_FILE"} must be at least 32 bytes`);
  }
  const jwksFile = r.optional("JWT_JWKS_FILE");
  let jwt: JwtConfig | undefined;
  if (hs256Secret !== undefined || jwksFile !== undefined) {
    const issuer = r.optional("JWT_ISSUER");
    const audience = r.optional("JWT_AUDIENCE");
    if (issuer === undefined) r.fail("JWT_ISSUER is required when JWTs are configured");
    if (audience === undefined) r.fail("JWT_AUDIENCE is required when JWTs are configured");
    jwt = {
      hs256Secret,
      jwksFile,
      issuer: issuer ?? "",
      audience: audience ?? "",
      tenantClaim: r.raw("JWT_TENANT_CLAIM"),
      scopesClaim: r.raw("JWT_SCOPES_CLAIM"),
      clockToleranceMs: r.duration("JWT_CLOCK_TOLERANCE", 0),
      ...userClaim(r),
    };
  }
  if (jwt === undefined && r.optional("JWT_USER_CLAIM") !== undefined) {
    r.fail("JWT_USER_CLAIM needs JWTs (JWT_HS256_SECRET, JWT_HS256_SECRET_FILE or JWT_JWKS_FILE)");
  }
  const clientCaFile = r.optional("TLS_CLIENT_CA_FILE");
  const mtlsPrincipalsFile = r.optional("MTLS_PRINCIPALS_FILE");
  if ((clientCaFile === undefined) !== (mtlsPrincipalsFile === undefined)) {
    r.fail("TLS_CLIENT_CA_FILE and MTLS_PRINCIPALS_FILE must be set together");
  }
  if (clientCaFile !== undefined && r.optional("TLS_CERT_FILE") === undefined) {
    r.fail("TLS_CLIENT_CA_FILE needs TLS (TLS_CERT_FILE and TLS_KEY_FILE)");
  }
  return {
    apiKeysFile: r.optional("API_KEYS_FILE"),
    jwt,
    clientCaFile,
    mtlsPrincipalsFile,
    protectOps: r.boolean("AUTH_PROTECT_OPS"),
    allowInsecure: r.boolean("ALLOW_INSECURE"),
  };
}

function encryptionConfig(r: Reader): EncryptionConfig {
  const keys = r.optional("ENCRYPTION_KEYS");
  const keysFile = r.optional("ENCRYPTION_KEYS_FILE");
  if (keys !== undefined && keysFile !== undefined) {
    r.fail("ENCRYPTION_KEYS and ENCRYPTION_KEYS_FILE are both set: use one");
  }
  const variable = keysFile === undefined ? "ENCRYPTION_KEYS" : "ENCRYPTION_KEYS_FILE";
  const text = keysFile === undefined ? (keys ?? "") : r.attempt(() => readSecretFile(variable, keysFile), "");
  let keyring: Keyring | undefined;
  if (text.trim() !== "") {
    try {
      keyring = parseKeyring(text);
    } catch (error) {
      if (!(error instanceof KeyringError)) throw error;
      r.fail(`${variable}: ${error.message}`);
    }
  }
  const algorithm = r.raw("ENCRYPTION_CIPHER");
  if (!isSealAlgorithm(algorithm)) r.fail(`ENCRYPTION_CIPHER=${JSON.stringify(algorithm)} must be one of ${SEAL_ALGORITHMS.join(", ")}`);
  return {
    keyring,
    allowPlaintext: r.boolean("ALLOW_PLAINTEXT"),
    migratePlaintext: r.boolean("ENCRYPTION_MIGRATE_PLAINTEXT"),
    algorithm: isSealAlgorithm(algorithm) ? algorithm : "chacha20-poly1305",
  };
}

function isSealAlgorithm(text: string): text is SealAlgorithm {
  return (SEAL_ALGORITHMS as readonly string[]).includes(text);
}

/** A file's contents without the trailing newline editors add; the message names the variable, never the contents. */
function readSecretFile(variable: string, path: string): string {
  try {
    return readFileSync(path, "utf8").replace(/\r?\n$/, "");
  } catch (error) {
    throw new ConfigError(`${variable}: cannot read ${JSON.stringify(path)} (${(error as NodeJS.ErrnoException).code ?? "error"})`);
  }
}
