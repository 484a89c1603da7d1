/**
 * Keeps session records in Redis's compact hash encoding (listpack).
 *
 * Redis stores a hash as a listpack only while every field and value is at
 * most `hash-max-listpack-value` bytes (default 64); one longer value turns the
 * whole hash into a hash table for good. Sealed metadata (`e2:<key id>:` and
 * base64url of nonce, ciphertext and tag) is longer than 64 bytes for any
 * metadata, so with encryption on every record was a hash table: about 750 B
 * per record against about 330 B as a listpack. A record has about ten
 * fields, so the listpack's linear lookups cost nothing measurable.
 *
 * At start the service raises the threshold to HASH_VALUE_BYTES (never lowers
 * one an operator set higher), as it sets notify-keyspace-events, and logs the
 * change. Where CONFIG is refused (managed Redis) it logs what to set and
 * goes on: records then take more memory, nothing else changes (the line comes
 * again after each reconnect).
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";

/** Covers sealed metadata of JSON up to about 300 bytes. */
export const HASH_VALUE_BYTES = 512;
/** Redis 7's name; Redis 6 knows only the alias hash-max-ziplist-value, which Redis 7 also accepts. */
const SETTING = "hash-max-ziplist-value";

/** Raises the setting when it is lower; resolves whatever Redis answers (the encoding is an optimisation). */
export async function ensureCompactHashes(command: Redis, logger: Logger | undefined): Promise<void> {
  try {
    const reply = (await command.config("GET", SETTING)) as unknown;
    const current = Array.isArray(reply) ? Number(reply[1]) : Number.NaN;
    if (Number.isFinite(current) && current >= HASH_VALUE_BYTES) return;
    await command.config("SET", SETTING, String(HASH_VALUE_BYTES));
    logger?.info(
      { setting: "hash-max-listpack-value", from: current, to: HASH_VALUE_BYTES },
      `changed the Redis server setting hash-max-listpack-value from ${current} to ${HASH_VALUE_BYTES} (compact session records with encrypted metadata)`,
    );
  } catch (error) {
    if (!(error instanceof Error && error.name === "ReplyError")) throw error;
    logger?.warn(
      `Redis refuses CONFIG: set hash-max-listpack-value to at least ${HASH_VALUE_BYTES} (hash-max-ziplist-value on Redis 6) so that session records with encrypted metadata stay compact (about 420 B less per session)`,
    );
  }
}
