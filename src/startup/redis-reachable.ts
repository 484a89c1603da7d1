/**
 * One bounded connection attempt to Redis (REDIS_URL, or the primary the
 * sentinels of REDIS_SENTINELS name) before anything else starts, so a
 * wrong address or password fails the start at once with a line naming the
 * address and the cause, instead of a service that comes up not ready and
 * retries in the background. Once running, the store rides out Redis outages
 * on its own (UNAVAILABLE, readiness), which is a different situation: a
 * deploy with a wrong URL should never look healthy enough to roll on.
 */
import type { Redis, RedisOptions } from "ioredis";
import { StartError } from "./start-error.js";

/** host:port of a redis:// URL, without the user or password it may carry. */
export function redisAddress(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || "127.0.0.1"}:${parsed.port || "6379"}`;
  } catch {
    return "(unparsable REDIS_URL)";
  }
}

/** How to reach the store's Redis, for the start check. */
export interface RedisEndpoint {
  /** A connection with these options (no password in anything it reports). */
  readonly open: (options: RedisOptions) => Redis;
  /** Where it points, without a password (see describeTarget in store/redis/connections.ts). */
  readonly address: string;
  /** The setting that names it, for the message. */
  readonly setting: string;
}

/** Resolves when Redis answers PING within timeoutMs; else rejects with a StartError naming the address and cause. */
export async function assertRedisReachable(endpoint: RedisEndpoint, timeoutMs: number): Promise<void> {
  const redis = endpoint.open({
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  // Connection errors also come as events; the rejection below carries the same one.
  let lastError: Error | undefined;
  redis.on("error", (error: Error) => {
    lastError = error;
  });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new StartError(`Redis at ${endpoint.address} (${endpoint.setting}) is unreachable: ${causeOf(lastError ?? error)}`);
  } finally {
    redis.disconnect();
  }
}

/** The errno code (ECONNREFUSED, ENOTFOUND, ETIMEDOUT) or Redis's reply (WRONGPASS ...): neither echoes the URL's password. */
function causeOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code;
  if (error.name === "ReplyError") return error.message.split("\n")[0] ?? "error reply";
  if (/connect ETIMEDOUT|timed out|timeout/i.test(error.message)) return "ETIMEDOUT (no answer within REDIS_COMMAND_TIMEOUT)";
  return error.message.replace(/redis(s)?:\/\/\S+/gi, "<url>").split("\n")[0] ?? error.name;
}
