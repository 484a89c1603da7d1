/**
 * `npm run reencrypt`: rewrites every sealed value in Redis (metadata of live
 * and archived sessions, data values) under the PRIMARY key of
 * ENCRYPTION_KEYS with the ENCRYPTION_CIPHER algorithm, and seals values
 * stored in plaintext (ALLOW_PLAINTEXT). Run it after putting a new key first
 * in ENCRYPTION_KEYS (keep the old ones listed until it has finished); then
 * the old keys can be removed.
 *
 * Reads the same environment as the service (REDIS_URL, KEY_PREFIX,
 * ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE, ENCRYPTION_CIPHER). It is safe to
 * run while the service serves: each value is replaced only if it is still
 * the one read (compare-and-set in one Lua step), so a concurrent write
 * always wins, and the key's TTL is kept. It walks keys with SCAN, which the service itself
 * never does: this is an offline maintenance job. On a Redis Cluster
 * (REDIS_CLUSTER_NODES) it scans every primary in turn; keys that a reshard
 * or a failover moves during the run may be missed: run it again afterwards
 * (a second run finds nothing left to do when nothing was missed).
 *
 * With several partitions it also reseals the partition secret
 * (src/store/partition-secret.ts), or makes it where there is none (the
 * service refuses to start without it once the layout holds data).
 *
 * Not rewritten: the lifecycle event stream, which is append-only; its
 * entries age out with the event retention, so keep an old key configured at
 * least that long after rotating.
 */
import { pathToFileURL } from "node:url";
import { once } from "node:events";
import { Cluster, type Redis } from "ioredis";
import { ConfigError, loadConfig } from "../config/config.js";
import { KeyedFieldCipher, dataField, METADATA_FIELD, type FieldBinding, type SealAlgorithm } from "../crypto/field-cipher.js";
import type { Keyring } from "../crypto/keyring.js";
import { countersKeyMatcher, encodeTenant, generationKey, Partitioning, RedisKeys, sessionKeyMatcher } from "../store/redis/keys.js";
import { preludeLua } from "../store/redis/lua/prelude.js";
import { clusterAuth, redisClient } from "../store/redis/connections.js";
import { redisTarget } from "../store/create-store.js";
import { SealedNames } from "../store/sealed-names.js";
import { openCopy, PARTITION_SECRET_BINDING, restoreCopies, sealNew } from "../store/partition-secret.js";
import { redisPartitionSecretCopies } from "../store/redis/partition-secret-copies.js";
import { loggedKeyOf } from "../store/store.js";

export interface ReencryptOptions {
  /** One Redis, or a Redis Cluster: then every primary is scanned, and each write goes to its key's slot. */
  readonly redis: Redis | Cluster;
  readonly keyPrefix: string;
  readonly keyring: Keyring;
  /** REDIS_PARTITIONS of the layout (default 1). */
  readonly partitions?: number;
  /** ENCRYPTION_CIPHER: values sealed with the other algorithm are resealed (default chacha20-poly1305). */
  readonly algorithm?: SealAlgorithm;
}

export interface ReencryptReport {
  /**
   * Several partitions: the partition secret (partition-secret.ts) was
   * "resealed" (or already under the primary key), "created" (there was
   * none), "unreadable" (left as it is; counted as failed); absent: one partition.
   */
  readonly partitionSecret?: "resealed" | "created" | "unreadable";
  /** Values looked at. */
  readonly values: number;
  /** Values rewritten under the primary key. */
  readonly rewritten: number;
  /** Values that changed between read and write (left to the writer). */
  readonly skippedConcurrent: number;
  /** Values that could not be opened with any configured key (left as they are). */
  readonly failed: number;
}

/**
 * Moves data entry ARGV[1] of hash KEYS[1] (if it still holds ARGV[2]) to
 * field ARGV[3] with value ARGV[4]; when that field was written meanwhile
 * (after a rotation) the old entry just goes. Keeps the data-bytes counter
 * (field b of record KEYS[2]) right.
 */
const DATA_MOVE_LUA = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local delta = -#ARGV[2]
if ARGV[1] ~= ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 then
    redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
    delta = delta + #ARGV[4]
  end
else
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  delta = delta + #ARGV[4]
end
if redis.call('HEXISTS', KEYS[2], 'b') == 1 then redis.call('HINCRBY', KEYS[2], 'b', delta) end
return 1
`;

/** Sets field ARGV[1] of hash KEYS[1] to ARGV[3] if it still holds ARGV[2]. */
const FIELD_CAS_LUA = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`;

/** Sets string KEYS[1] to ARGV[2] if it still holds ARGV[1] (a partition secret copy). */
const STRING_CAS_LUA = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

/** Replaces the metadata of record KEYS[1] with ARGV[2] and its tag with ARGV[3] if it still holds ARGV[1]. */
const RECORD_CAS_LUA = `
if redis.call('HGET', KEYS[1], 'm') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'm', ARGV[2], 'mt', ARGV[3])
return 1
`;

/**
 * The metadata (7th value) and metadata tag (13th, "" when absent) of the
 * packed archive at KEYS[1], or false (see write_archive in lua/prelude.ts).
 */
const ARCHIVE_METADATA_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return false end
local values = { cmsgpack.unpack(packed) }
return { values[7], values[13] or '', values[1], values[2], values[11] or '', values[12] or '' }
`;

/**
 * Replaces the metadata of the packed archive KEYS[1] with ARGV[2] and its tag
 * with ARGV[3] if it still holds ARGV[1]; keeps the key's TTL. An archive
 * written before sealed identifiers gets empty ones.
 */
const ARCHIVE_CAS_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return 0 end
local values = { cmsgpack.unpack(packed) }
if values[7] ~= ARGV[1] then return 0 end
values[7] = ARGV[2]
values[11] = values[11] or ''
values[12] = values[12] or ''
values[13] = ARGV[3]
redis.call('SET', KEYS[1], cmsgpack.pack(unpack(values, 1, 13)), 'KEEPTTL')
return 1
`;

/**
 * Moves live session ARGV[OP] from user token ARGV[OP+1] and data-source token
 * ARGV[OP+4] to the primary key's tokens ARGV[OP+2], ARGV[OP+5] with the
 * sealed names ARGV[OP+3], ARGV[OP+6]: record fields, index entries (either
 * layout, into the current one, scored by the record's expire time), due-queue
 * member, data-source gauges and names. Only if the
 * record still names the old tokens. Runs on the store's prelude (key names,
 * gauges), with its argument header: an EVAL script, so the prelude's call
 * state is set from the script's ARGV (begin) before the body runs.
 */
const RETOKEN_LUA = `local EVAL_ARGV = ARGV
${preludeLua}
begin(EVAL_ARGV)
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, ou, nu, nU, od, nd, nD = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2], ARGV[OP + 3], ARGV[OP + 4], ARGV[OP + 5], ARGV[OP + 6]
local key = k_rec(tp, sid)
local rec = load_record(tp, sid)
if not rec or rec.u ~= ou or rec.d ~= od then return 0 end
local e = tonumber(rec.e)
if ou ~= nu then
  redis.call('ZREM', k_user(tp, ou), sid)
  redis.call('ZREM', k_user_idx(tp, ou), sid_member(sid))
  index_add_user(tp, sid, { u = nu, e = rec.e })
end
if od ~= nd then
  index_remove_source(tp, sid, od, e)
  index_add_source(tp, T, sid, { d = nd, e = rec.e })
  ctr_gauge(tp, 's:' .. od, -1)
  ctr_gauge(tp, 's:' .. nd, 1)
end
name_source(tp, nd, nD)
redis.call('HSET', key, 'u', nu, 'd', nd, 'U', nU)
redis.call('HDEL', key, 'D')
return 1
`;

/** Replaces user and data source of the packed archive KEYS[1] (ARGV[1], ARGV[2]) with ARGV[3..6] (tokens, sealed names); keeps the TTL. */
const ARCHIVE_RETOKEN_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return 0 end
local values = { cmsgpack.unpack(packed) }
if values[1] ~= ARGV[1] or values[2] ~= ARGV[2] then return 0 end
values[1], values[2], values[11], values[12] = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
values[13] = values[13] or ''
redis.call('SET', KEYS[1], cmsgpack.pack(unpack(values, 1, 13)), 'KEEPTTL')
return 1
`;

export async function reencrypt(options: ReencryptOptions): Promise<ReencryptReport> {
  const { redis, keyPrefix, keyring } = options;
  // Reads plaintext too: sealing what was written before keys were configured is what ends the migration.
  const cipher = new KeyedFieldCipher(keyring, true, options.algorithm);
  const primary = keyring.primary.id;
  const current = (stored: string): boolean => cipher.sealedAsNow(stored);
  const sessionKey = sessionKeyMatcher(keyPrefix);
  const partitions = new Partitioning(options.partitions ?? 1);
  const countersTenant = countersKeyMatcher(keyPrefix);
  let values = 0;
  let rewritten = 0;
  let skippedConcurrent = 0;
  let failed = 0;

  const names = new SealedNames(cipher);
  /**
   * The user and data source of a record or archive under the primary key's
   * tokens, sealed under the primary key: from sealed names under older keys,
   * or from plaintext identifiers (written before keys were configured).
   */
  const retoken = async (key: string, tenant: string, sessionId: string, stored: { u: string; d: string; U: string; D: string }, packed: boolean): Promise<void> => {
    // The prelude's header (lua/prelude.ts): KEYS[1] names the partition's slot, ARGV[11..13] the partition.
    const partition = partitions.ofSession(sessionId);
    const tag = partitions.tags[partition] as string;
    values++;
    let user: string;
    let dataSource: string;
    try {
      user = stored.U === "" ? names.legacyName(stored.u) : names.openName(tenant, "user", stored.U, stored.u);
      dataSource = stored.D === "" ? names.legacyName(stored.d) : names.openName(tenant, "data_source", stored.D, stored.d);
    } catch {
      failed++;
      return;
    }
    const u = names.token(tenant, "user", user);
    const d = names.token(tenant, "data_source", dataSource);
    if (u === stored.u && d === stored.d && current(stored.U) && current(stored.D)) return;
    const U = names.sealName(tenant, "user", user);
    const D = names.sealName(tenant, "data_source", dataSource);
    const done = packed
      ? await redis.eval(ARCHIVE_RETOKEN_LUA, 1, key, stored.u, stored.d, u, d, U, D)
      : await redis.eval(RETOKEN_LUA, 1, generationKey(keyPrefix, tag), keyPrefix, encodeTenant(tenant), 0, 0, 0, 0, 0, "", "", "0", tag, partition, partitions.count, sessionId, stored.u, u, U, stored.d, d, D);
    if (done === 1) rewritten++;
    else skippedConcurrent++;
  };

  /**
   * A data entry: value and key name sealed under the primary key, the field
   * the primary key's token of the name (see SealedStore.setData). A value
   * stored in plaintext under a plain key name is sealed and moved.
   */
  const rewriteData = async (key: string, tenant: string, sessionId: string, field: string, stored: string, recordKey: string): Promise<void> => {
    values++;
    let name: string;
    let value: string;
    let sealed: string;
    try {
      ({ name, value } = names.dataEntry(tenant, field, stored));
      const binding = { tenant, sessionId, field: dataField(name) };
      sealed = current(value) ? value : cipher.seal(cipher.open(value, binding), binding);
    } catch {
      failed++;
      return;
    }
    const token = names.token(tenant, "data_key", name);
    const sealedName = loggedKeyOf("", stored);
    if (token === field && sealed === value && current(sealedName)) return;
    const done = await redis.eval(DATA_MOVE_LUA, 2, key, recordKey, field, stored, token, `${names.sealName(tenant, "data_key", name)} ${sealed}`);
    if (done === 1) rewritten++;
    else skippedConcurrent++;
  };
  /**
   * Metadata of a record or archive: resealed under the primary key and
   * tagged (see SealedFields.metadataTag). Metadata without a tag (written
   * before tags) is tagged as it is; one whose tag does not match is left
   * alone and counted as failed: tagging it would bless a replayed ciphertext.
   */
  /** The sealed data-source names of a tenant's counters (n:<token>), resealed under the primary key. */
  const rewriteSourceNames = async (key: string, tenant: string): Promise<void> => {
    if ((await redis.type(key)) !== "hash") return;
    for (const [field, stored] of Object.entries(await redis.hgetall(key))) {
      if (!field.startsWith("n:")) continue;
      values++;
      if (current(stored)) continue;
      let sealed: string;
      try {
        sealed = names.sealName(tenant, "data_source", names.openName(tenant, "data_source", stored, field.slice(2)));
      } catch {
        failed++;
        continue;
      }
      if ((await redis.eval(FIELD_CAS_LUA, 1, key, field, stored, sealed)) === 1) rewritten++;
      else skippedConcurrent++;
    }
  };
  const rewriteMetadata = async (key: string, stored: string, tag: string, binding: FieldBinding, packed: boolean): Promise<void> => {
    values++;
    if (tag !== "" && !cipher.tagMatches(tag, stored, binding)) {
      failed++;
      return;
    }
    if (current(stored) && tag.startsWith(`${primary}.`)) return;
    let sealed = stored;
    try {
      if (!current(stored)) sealed = cipher.seal(cipher.open(stored, binding), binding);
    } catch {
      failed++;
      return;
    }
    const done = await redis.eval(packed ? ARCHIVE_CAS_LUA : RECORD_CAS_LUA, 1, key, stored, sealed, cipher.tag(sealed, binding));
    if (done === 1) rewritten++;
    else skippedConcurrent++;
  };

  /**
   * Each copy of the partition secret resealed under the primary key (copies
   * a partition lost restored); made when there is none, which the service
   * refuses to do over existing data.
   */
  const resealPartitionSecret = async (): Promise<ReencryptReport["partitionSecret"]> => {
    const copies = redisPartitionSecretCopies(redis, keyPrefix, partitions);
    if (copies === undefined) return undefined;
    const stored = await copies.read();
    if (stored.some((copy) => copy === undefined)) {
      failed++;
      return "unreadable";
    }
    if (stored.every((copy) => copy === null)) {
      await copies.writeIfAbsent(0, sealNew(cipher));
      const [made] = await copies.read();
      if (typeof made === "string") await restoreCopies(copies, made);
      return "created";
    }
    let secret: Buffer | undefined;
    const resealed: string[] = [];
    for (const [i, copy] of stored.entries()) {
      if (copy === null || copy === undefined) continue;
      values++;
      let opened: Buffer;
      try {
        opened = openCopy(cipher, copy, copies.keyName(i));
      } catch {
        failed++;
        return "unreadable";
      }
      if (secret !== undefined && !secret.equals(opened)) {
        failed++;
        return "unreadable";
      }
      secret = opened;
      if (current(copy)) {
        resealed.push(copy);
        continue;
      }
      const sealed = cipher.seal(opened.toString("base64url"), PARTITION_SECRET_BINDING);
      if ((await redis.eval(STRING_CAS_LUA, 1, copies.keyName(i), copy, sealed)) === 1) {
        rewritten++;
        resealed.push(sealed);
      } else skippedConcurrent++;
    }
    const [any] = resealed;
    if (any !== undefined) await restoreCopies(copies, any);
    return "resealed";
  };

  if (redis instanceof Cluster && redis.status !== "ready") await once(redis, "ready");
  const partitionSecret = await resealPartitionSecret();
  // SCAN walks one node's keys: on a cluster, every primary's.
  const scanned: Redis[] = redis instanceof Cluster ? redis.nodes("master") : [redis];
  for (const node of scanned) {
  let cursor = "0";
  do {
    const [next, keys] = await node.scan(cursor, "MATCH", `${escapeGlob(keyPrefix)}*`, "COUNT", 500);
    cursor = next;
    for (const key of keys) {
      const counters = countersTenant(key);
      if (counters !== undefined) {
        await rewriteSourceNames(key, counters);
        continue;
      }
      const name = sessionKey(key);
      if (name === undefined || name.kind === "shadow") continue;
      const { tenant, sessionId } = name;
      const type = await redis.type(key);
      if (name.kind === "archive" && type === "string") {
        const found = (await redis.eval(ARCHIVE_METADATA_LUA, 1, key)) as [string, string, string, string, string, string] | null;
        if (found === null) continue;
        if (found[0] !== "") await rewriteMetadata(key, found[0], found[1], { tenant, sessionId, field: METADATA_FIELD }, true);
        await retoken(key, tenant, sessionId, { u: found[2], d: found[3], U: found[4], D: found[5] }, true);
        continue;
      }
      if (type !== "hash") continue;
      if (name.kind === "data") {
        const recordKey = new RedisKeys(keyPrefix, tenant, partitions).record(sessionId);
        let fieldCursor = "0";
        do {
          const [nextField, flat] = await redis.hscan(key, fieldCursor, "COUNT", 500);
          fieldCursor = nextField;
          for (let i = 0; i + 1 < flat.length; i += 2) {
            await rewriteData(key, tenant, sessionId, flat[i] as string, flat[i + 1] as string, recordKey);
          }
        } while (fieldCursor !== "0");
      } else {
        const [metadata, tag, u, d, U, D] = await redis.hmget(key, "m", "mt", "u", "d", "U", "D");
        if (metadata !== null && metadata !== undefined) await rewriteMetadata(key, metadata, tag ?? "", { tenant, sessionId, field: METADATA_FIELD }, false);
        // A record keeps no sealed data-source name of its own (records of earlier versions do): the counters keep it.
        const sealedSource = D ?? (typeof d === "string" ? await redis.hget(new RedisKeys(keyPrefix, tenant, partitions).counters(partitions.ofSession(sessionId)), `n:${d}`) : null);
        if (typeof u === "string" && typeof d === "string") await retoken(key, tenant, sessionId, { u, d, U: U ?? "", D: sealedSource ?? "" }, false);
      }
    }
  } while (cursor !== "0");
  }
  return { ...(partitionSecret === undefined ? {} : { partitionSecret }), values, rewritten, skippedConcurrent, failed };
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
  const cluster = config.redisCluster;
  if ((target === undefined && cluster === undefined) || config.encryption.keyring === undefined) {
    process.stderr.write(
      "reencrypt: needs REDIS_URL (or REDIS_SENTINELS or REDIS_CLUSTER_NODES) and ENCRYPTION_KEYS (or ENCRYPTION_KEYS_FILE); the first key is the one values are rewritten under\n",
    );
    return 2;
  }
  const redis =
    cluster !== undefined
      ? new Cluster(
          cluster.nodes.map((n) => ({ host: n.host, port: n.port })),
          { scaleReads: "master", redisOptions: { maxRetriesPerRequest: 1, ...clusterAuth(cluster) } },
        )
      : redisClient(target as NonNullable<typeof target>, { maxRetriesPerRequest: 1 });
  try {
    const report = await reencrypt({ redis, keyPrefix: config.keyPrefix, keyring: config.encryption.keyring, partitions: config.redisPartitions, algorithm: config.encryption.algorithm });
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
