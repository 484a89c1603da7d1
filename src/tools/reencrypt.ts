/**
 * `npm run reencrypt`: rewrites every sealed value in Redis (metadata of live
 * and archived sessions, data values) under the PRIMARY key of
 * ENCRYPTION_KEYS, and seals values stored in plaintext (ALLOW_PLAINTEXT).
 * Run it after putting a new key first in ENCRYPTION_KEYS (keep the old ones
 * listed until it has finished); then the old keys can be removed.
 *
 * Reads the same environment as the service (REDIS_URL, KEY_PREFIX,
 * ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE). It is safe to run while the
 * service serves: each value is replaced only if it is still the one read
 * (compare-and-set in one Lua step), so a concurrent write always wins, and
 * the key's TTL is kept. It walks keys with SCAN, which the service itself
 * never does: this is an offline maintenance job.
 *
 * Not rewritten: the lifecycle event stream, which is append-only; its
 * entries age out with the event retention, so keep an old key configured at
 * least that long after rotating.
 */
import { pathToFileURL } from "node:url";
import type { Redis } from "ioredis";
import { ConfigError, loadConfig } from "../config/config.js";
import { AesGcmFieldCipher, dataField, METADATA_FIELD, sealedKeyId, type FieldBinding } from "../crypto/field-cipher.js";
import type { Keyring } from "../crypto/keyring.js";
import { RedisKeys, sessionKeyMatcher } from "../store/redis/keys.js";
import { redisClient } from "../store/redis/connections.js";
import { redisTarget } from "../store/create-store.js";

export interface ReencryptOptions {
  readonly redis: Redis;
  readonly keyPrefix: string;
  readonly keyring: Keyring;
}

export interface ReencryptReport {
  /** Values looked at. */
  readonly values: number;
  /** Values rewritten under the primary key. */
  readonly rewritten: number;
  /** Values that changed between read and write (left to the writer). */
  readonly skippedConcurrent: number;
  /** Values that could not be opened with any configured key (left as they are). */
  readonly failed: number;
}

/** Replaces field ARGV[1] of hash KEYS[1] with ARGV[3] if it still holds ARGV[2]; keeps the data-bytes counter (field b of KEYS[2]) right. */
const CAS_LUA = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if KEYS[2] ~= '' and redis.call('HEXISTS', KEYS[2], 'b') == 1 then
  redis.call('HINCRBY', KEYS[2], 'b', #ARGV[3] - #ARGV[2])
end
return 1
`;

/** The metadata (7th value) of the packed archive at KEYS[1], or false (see write_archive in lua/prelude.ts). */
const ARCHIVE_METADATA_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return false end
local values = { cmsgpack.unpack(packed) }
return values[7]
`;

/** Replaces the metadata of the packed archive KEYS[1] with ARGV[2] if it still holds ARGV[1]; keeps the key's TTL. */
const ARCHIVE_CAS_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return 0 end
local values = { cmsgpack.unpack(packed) }
if values[7] ~= ARGV[1] then return 0 end
values[7] = ARGV[2]
redis.call('SET', KEYS[1], cmsgpack.pack(unpack(values)), 'KEEPTTL')
return 1
`;

export async function reencrypt(options: ReencryptOptions): Promise<ReencryptReport> {
  const { redis, keyPrefix, keyring } = options;
  // Reads plaintext too: sealing what was written before keys were configured is what ends the migration.
  const cipher = new AesGcmFieldCipher(keyring, true);
  const primary = keyring.primary.id;
  const sessionKey = sessionKeyMatcher(keyPrefix);
  let values = 0;
  let rewritten = 0;
  let skippedConcurrent = 0;
  let failed = 0;

  const rewrite = async (key: string, field: string, stored: string, binding: FieldBinding, recordKey: string, packed = false): Promise<void> => {
    values++;
    if (sealedKeyId(stored) === primary) return;
    let sealed: string;
    try {
      sealed = cipher.seal(cipher.open(stored, binding), binding);
    } catch {
      failed++;
      return;
    }
    const done = packed ? await redis.eval(ARCHIVE_CAS_LUA, 1, key, stored, sealed) : await redis.eval(CAS_LUA, 2, key, recordKey, field, stored, sealed);
    if (done === 1) rewritten++;
    else skippedConcurrent++;
  };

  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${escapeGlob(keyPrefix)}*`, "COUNT", 500);
    cursor = next;
    for (const key of keys) {
      const name = sessionKey(key);
      if (name === undefined || name.kind === "shadow") continue;
      const { tenant, sessionId } = name;
      const type = await redis.type(key);
      if (name.kind === "archive" && type === "string") {
        const metadata = (await redis.eval(ARCHIVE_METADATA_LUA, 1, key)) as string | null;
        if (metadata !== null && metadata !== "") await rewrite(key, "m", metadata, { tenant, sessionId, field: METADATA_FIELD }, "", true);
        continue;
      }
      if (type !== "hash") continue;
      if (name.kind === "data") {
        const recordKey = new RedisKeys(keyPrefix, tenant).record(sessionId);
        let fieldCursor = "0";
        do {
          const [nextField, flat] = await redis.hscan(key, fieldCursor, "COUNT", 500);
          fieldCursor = nextField;
          for (let i = 0; i + 1 < flat.length; i += 2) {
            const field = flat[i] as string;
            await rewrite(key, field, flat[i + 1] as string, { tenant, sessionId, field: dataField(field) }, recordKey);
          }
        } while (fieldCursor !== "0");
      } else {
        const metadata = await redis.hget(key, "m");
        if (metadata !== null) await rewrite(key, "m", metadata, { tenant, sessionId, field: METADATA_FIELD }, "");
      }
    }
  } while (cursor !== "0");
  return { values, rewritten, skippedConcurrent, failed };
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

async function main(): Promise<number> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`reencrypt: invalid configuration: ${error.message}\n`);
    return 2;
  }
  const target = redisTarget(config);
  if (target === undefined || config.encryption.keyring === undefined) {
    process.stderr.write("reencrypt: needs REDIS_URL (or REDIS_SENTINELS) and ENCRYPTION_KEYS (or ENCRYPTION_KEYS_FILE); the first key is the one values are rewritten under\n");
    return 2;
  }
  const redis = redisClient(target, { maxRetriesPerRequest: 1 });
  try {
    const report = await reencrypt({ redis, keyPrefix: config.keyPrefix, keyring: config.encryption.keyring });
    process.stdout.write(`${JSON.stringify({ primaryKeyId: config.encryption.keyring.primary.id, ...report })}\n`);
    return report.failed === 0 ? 0 : 1;
  } finally {
    redis.disconnect();
  }
}

// Run as a command (not when a test imports reencrypt()).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
