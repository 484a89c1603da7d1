/**
 * Service configuration, read from the environment once at start.
 *
 * Every setting has a documented default (README "Configuration"); an invalid
 * value stops the start with a message naming the variable, because a service
 * that silently falls back to a default on a typo is worse than one that refuses
 * to start.
 */

export interface TtlConfig {
  /** TTL of a session created without one. */
  readonly defaultMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

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
  readonly defaultPageSize: number;
  readonly maxPageSize: number;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Absent: the in-process MemoryStore is used and nothing is persisted. */
  readonly redisUrl: string | undefined;
  readonly keyPrefix: string;
  /** The tenant every call acts on until authentication is configured. */
  readonly defaultTenant: string;
  readonly ttl: TtlConfig;
  readonly limits: LimitsConfig;
  /** How long archived (closed or expired) sessions stay readable. */
  readonly archiveRetentionMs: number;
  /** How long a due session's keys outlive expire_time, so a late sweeper can still archive it. */
  readonly expiryGraceMs: number;
  /** How often each process looks for sessions past their expire_time. */
  readonly sweepIntervalMs: number;
  /** Bound on one Redis command; past it the RPC fails with UNAVAILABLE. */
  readonly redisCommandTimeoutMs: number;
  /** Interval of heartbeat events on idle watch streams. */
  readonly watchHeartbeatMs: number;
  readonly logLevel: string;
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
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
  { env: "KEY_PREFIX", default: "sd:", description: "Prefix of every Redis key" },
  { env: "DEFAULT_TENANT", default: "default", description: "Tenant of every call until authentication is configured" },
  { env: "SESSION_TTL_DEFAULT", default: "1h", description: "TTL of a session created without one" },
  { env: "SESSION_TTL_MIN", default: "1s", description: "Smallest TTL a create or extend may ask for" },
  { env: "SESSION_TTL_MAX", default: "24h", description: "Largest TTL a create or extend may ask for" },
  { env: "ARCHIVE_RETENTION", default: "7d", description: "How long closed and expired sessions stay readable" },
  { env: "EXPIRY_GRACE", default: "1h", description: "How long a due session's keys outlive expire_time for a late sweeper" },
  { env: "SWEEP_INTERVAL", default: "250ms", description: "How often each process expires due sessions" },
  { env: "REDIS_COMMAND_TIMEOUT", default: "2s", description: "Bound on one Redis call; past it RPCs fail with UNAVAILABLE" },
  { env: "WATCH_HEARTBEAT", default: "15s", description: "Heartbeat interval on idle watch streams" },
  { env: "MAX_REQUEST_BYTES", default: "1048576", description: "Largest request message" },
  { env: "MAX_METADATA_BYTES", default: "16384", description: "Largest metadata object (as JSON)" },
  { env: "MAX_DATA_KEY_LENGTH", default: "256", description: "Longest data key" },
  { env: "MAX_DATA_VALUE_BYTES", default: "65536", description: "Largest data value (as JSON)" },
  { env: "MAX_DATA_KEYS", default: "1000", description: "Most data keys per session" },
  { env: "DEFAULT_PAGE_SIZE", default: "100", description: "ListSessions page size when none is asked" },
  { env: "MAX_PAGE_SIZE", default: "1000", description: "Largest ListSessions page size" },
  { env: "LOG_LEVEL", default: "info", description: `Log level (${LOG_LEVELS.join(", ")})` },
];

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "250ms", "30s", "5m", "1h", "7d" (or a bare number of milliseconds). */
export function parseDurationMs(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) return undefined;
  const unit = DURATION_UNITS[match[2] ?? "ms"] ?? 1;
  const value = Number(match[1]) * unit;
  return Number.isFinite(value) ? Math.round(value) : undefined;
}

class Reader {
  constructor(private readonly env: Env) {}

  raw(name: string): string {
    const setting = SETTINGS.find((s) => s.env === name);
    if (setting === undefined) throw new Error(`unknown setting ${name}`);
    const value = this.env[name];
    return value === undefined || value === "" ? setting.default : value;
  }

  duration(name: string, minMs = 1): number {
    const text = this.raw(name);
    const ms = parseDurationMs(text);
    if (ms === undefined || ms < minMs) {
      throw new ConfigError(`${name}=${JSON.stringify(text)} is not a duration of at least ${minMs} ms (examples: 250ms, 30s, 5m, 1h, 7d)`);
    }
    return ms;
  }

  integer(name: string, min: number, max: number): number {
    const text = this.raw(name);
    const n = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(`${name}=${JSON.stringify(text)} must be a whole number from ${min} to ${max}`);
    }
    return n;
  }
}

/** Reads and validates the configuration. Throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);

  const redisUrl = r.raw("REDIS_URL");
  if (redisUrl !== "" && !/^rediss?:\/\//.test(redisUrl)) {
    throw new ConfigError(`REDIS_URL=${JSON.stringify(redisUrl)} must start with redis:// or rediss://`);
  }
  const tenant = r.raw("DEFAULT_TENANT");
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(tenant)) {
    throw new ConfigError(`DEFAULT_TENANT=${JSON.stringify(tenant)} must be 1-64 letters, digits, '_' or '-'`);
  }
  const logLevel = r.raw("LOG_LEVEL");
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError(`LOG_LEVEL=${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(", ")}`);
  }

  const ttl: TtlConfig = {
    defaultMs: r.duration("SESSION_TTL_DEFAULT"),
    minMs: r.duration("SESSION_TTL_MIN"),
    maxMs: r.duration("SESSION_TTL_MAX"),
  };
  if (!(ttl.minMs <= ttl.defaultMs && ttl.defaultMs <= ttl.maxMs)) {
    throw new ConfigError(
      `session TTLs must satisfy SESSION_TTL_MIN <= SESSION_TTL_DEFAULT <= SESSION_TTL_MAX (got ${ttl.minMs} ms, ${ttl.defaultMs} ms, ${ttl.maxMs} ms)`,
    );
  }

  const limits: LimitsConfig = {
    maxRequestBytes: r.integer("MAX_REQUEST_BYTES", 1024, 64 * 1024 * 1024),
    maxMetadataBytes: r.integer("MAX_METADATA_BYTES", 2, 16 * 1024 * 1024),
    maxDataKeyLength: r.integer("MAX_DATA_KEY_LENGTH", 1, 4096),
    maxDataValueBytes: r.integer("MAX_DATA_VALUE_BYTES", 1, 16 * 1024 * 1024),
    maxDataKeys: r.integer("MAX_DATA_KEYS", 1, 1_000_000),
    defaultPageSize: r.integer("DEFAULT_PAGE_SIZE", 1, 100_000),
    maxPageSize: r.integer("MAX_PAGE_SIZE", 1, 100_000),
  };
  if (limits.defaultPageSize > limits.maxPageSize) {
    throw new ConfigError(`DEFAULT_PAGE_SIZE (${limits.defaultPageSize}) must not exceed MAX_PAGE_SIZE (${limits.maxPageSize})`);
  }

  return {
    host: r.raw("HOST"),
    port: r.integer("PORT", 0, 65535),
    redisUrl: redisUrl === "" ? undefined : redisUrl,
    keyPrefix: r.raw("KEY_PREFIX"),
    defaultTenant: tenant,
    ttl,
    limits,
    archiveRetentionMs: r.duration("ARCHIVE_RETENTION", 1000),
    expiryGraceMs: r.duration("EXPIRY_GRACE", 1000),
    sweepIntervalMs: r.duration("SWEEP_INTERVAL", 10),
    redisCommandTimeoutMs: r.duration("REDIS_COMMAND_TIMEOUT", 10),
    watchHeartbeatMs: r.duration("WATCH_HEARTBEAT", 10),
    logLevel,
  };
}
