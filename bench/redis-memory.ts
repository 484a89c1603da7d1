/**
 * Measures Redis memory per live session: creates 100k sessions through
 * RedisStore on a private redis-server (10k users, 10 data sources, ~40 bytes of
 * JSON metadata sealed as the service seals it, no request ids), with the
 * server settings the service makes at start (RedisStore.keepServerSettings:
 * hash-max-listpack-value), and measures the used_memory delta per session
 * twice:
 *
 * 1. with the expiry machinery (record, user, data-source and tenant-wide
 *    indexes, counters, and the due queue `P dx`, one member per data source:
 *    no key per session, see src/store/redis/keys.ts): issue 3's target, < 700 B;
 * 2. after deleting the due queue: the session with every index it needs and
 *    no expiry machinery, issue 2's target, < 600 B.
 *
 * The event log (`P ev`, one CREATED entry per create) is left out of both and
 * reported apart: it is bounded by WATCH_RETENTION_EVENTS, not by the number of
 * sessions.
 *
 * Redis shrinks the keyspace's hash tables only below 10 % fill; the script
 * reports the buckets beyond what the keys need (from MEMORY STATS), which
 * without a key per session for expiry stay near zero.
 *
 * Then where the bytes go: MEMORY USAGE per kind of key (byKind).
 *
 *   npx tsx bench/redis-memory.ts [sessions]
 *   MEMORY_BENCH_PLAINTEXT=1 (plain JSON metadata), MEMORY_BENCH_AS_IS=1 (Redis's default settings)
 *
 * Prints a few lines for people, then one JSON line (MemoryReport) for bench/run.ts.
 */
import type { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { DEFAULT_KEY_PREFIX, RedisKeys } from "../src/store/redis/keys.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { BenchSealer } from "./expiry-schedule.js";

const SESSIONS = Number(process.argv[2] ?? 100_000);
/** MEMORY_BENCH_PLAINTEXT=1: metadata stored as plain JSON (ALLOW_PLAINTEXT), as the earlier figures were measured. */
const PLAINTEXT = process.env["MEMORY_BENCH_PLAINTEXT"] === "1";
/** MEMORY_BENCH_AS_IS=1: Redis's own settings, without what the service sets at start. */
const AS_IS = process.env["MEMORY_BENCH_AS_IS"] === "1";
const sealer = new BenchSealer();
const USERS = 10_000;
const SOURCES = 10;
const CONCURRENCY = 200;
const TENANT = "default";
/** Bytes of one hash-table bucket (a pointer) in Redis's dict. */
const BUCKET_BYTES = 8;

export interface MemoryReport {
  readonly sessions: number;
  readonly createSeconds: number;
  /** Metadata sealed (AES-GCM, as the service stores it) or plain JSON. */
  readonly sealed: boolean;
  /** Bytes of one stored metadata value. */
  readonly metadataBytes: number;
  /** used_memory delta per session, event log excluded, expiry machinery (the due queue) included. */
  readonly bytesPerSession: number;
  /** The same after deleting the due queue (the name is of the shadow keys earlier versions kept per session). */
  readonly bytesPerSessionWithoutShadow: number;
  /** Of bytesPerSessionWithoutShadow: keyspace buckets beyond what the keys need, per session. */
  readonly staleBucketBytesPerSession: number;
  readonly eventLogBytes: number;
  readonly eventLogEntries: number;
  /**
   * Where the bytes per session go, by key kind: MEMORY USAGE (value, key name
   * and its keyspace entry) of every key of that kind, or of a sample times the
   * count, divided by the sessions. "other" is the rest of the used_memory delta:
   * the TTL table's entries and both keyspace tables' buckets.
   */
  readonly byKind?: Readonly<Record<string, number>>;
}

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info("memory");
  const match = /^used_memory:(\d+)/m.exec(info);
  if (match?.[1] === undefined) throw new Error("used_memory missing from INFO");
  return Number(match[1]);
}

/**
 * Bucket bytes of db 0's two keyspace tables (keys and expires) beyond what
 * tables sized for their current key counts would take. From MEMORY STATS:
 * overhead.hashtable.main = keys × (dictEntry 24 + robj 16) + buckets × 8 and
 * overhead.hashtable.expires = volatile keys × 24 + buckets × 8 (Redis 7).
 */
async function staleBucketBytes(client: Redis): Promise<number> {
  const stats = (await client.call("MEMORY", "STATS")) as unknown[];
  const db = stats[stats.indexOf("db.0") + 1];
  if (!Array.isArray(db)) return Number.NaN;
  const field = (name: string): number => Number(db[db.indexOf(name) + 1]);
  const keyspace = await client.info("keyspace");
  const keys = Number(/^db0:keys=(\d+)/m.exec(keyspace)?.[1] ?? Number.NaN);
  const volatile = Number(/^db0:.*expires=(\d+)/m.exec(keyspace)?.[1] ?? Number.NaN);
  const mainBuckets = (field("overhead.hashtable.main") - keys * 40) / BUCKET_BYTES;
  const expiresBuckets = (field("overhead.hashtable.expires") - volatile * 24) / BUCKET_BYTES;
  const needed = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(4, n)));
  return (Math.max(0, mainBuckets - needed(keys)) + Math.max(0, expiresBuckets - needed(volatile))) * BUCKET_BYTES;
}

const server = await startRedisServer();
const client = server.client();
const keys = new RedisKeys(DEFAULT_KEY_PREFIX, TENANT);
const redisStore = new RedisStore({
  url: server.url,
  keyPrefix: DEFAULT_KEY_PREFIX,
  limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 300_000 },
  commandTimeoutMs: 5000,
});
// As the service with keys writes (user ids and data sources as keyed tokens, names sealed beside them).
const store = PLAINTEXT ? redisStore : sealer.wrap(redisStore);
let settings: { stop(): Promise<void> } | undefined;
try {
  await store.ping();
  // What the service's start does to the server (compact hashes: see compact-hashes.ts).
  if (!AS_IS) settings = await redisStore.keepServerSettings();
  // Warm up: the first script calls load the scripts and create the due queue and counters.
  const warm = await store.create({
    tenant: TENANT, userId: "warm", dataSource: "warm", accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "",
  });
  await store.close(TENANT, warm.session.sessionId);
  const before = await usedMemory(client);
  const started = Date.now();
  const sessionIds: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < SESSIONS) {
      const i = next++;
      const { session } = await store.create({
        tenant: TENANT,
        // Sealed as the service stores it (it refuses plaintext with keys, and runs without keys only with ALLOW_PLAINTEXT).
        ...(PLAINTEXT ? { metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }) } : sealer.sealed(TENANT, JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }))),
        userId: `user-${String(i % USERS).padStart(5, "0")}`,
        dataSource: `source-${i % SOURCES}`,
        accessLevel: i % 3 === 0 ? "write" : "read",
        ttlMs: 3_600_000 + (i % 1000) * 1000,
        requestId: "",
      });
      sessionIds.push(session.sessionId);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const createSeconds = (Date.now() - started) / 1000;
  const metadataBytes = Buffer.byteLength(String(await client.hget(keys.record(sessionIds[0] ?? ""), "m")));
  const withShadow = await usedMemory(client);
  const logKey = keys.events();
  const logBytes = Number(await client.call("MEMORY", "USAGE", logKey, "SAMPLES", "0"));
  const logEntries = await client.xlen(logKey);

  // No key per session for expiry (a shadow key here would be a regression).
  for (let i = 0; i < sessionIds.length; i += 1000) {
    const shadows = sessionIds.slice(i, i + 1000).map((id) => `${keys.record(id)}:x`);
    const found = await client.exists(...shadows);
    if (found !== 0) throw new Error(`found ${found} shadow keys`);
  }
  // The expiry machinery: the due queue alone, measured before it is deleted.
  const dueQueueBytes = Number(await client.call("MEMORY", "USAGE", keys.due(), "SAMPLES", "0"));
  if (!(await client.del(keys.due()))) throw new Error("no due queue");
  const withoutShadow = await usedMemory(client);
  // By MEMORY USAGE per kind of key.
  const sampled = async (names: readonly string[], total: number): Promise<number> => {
    const step = Math.max(1, Math.floor(names.length / 2000));
    let sum = 0;
    let n = 0;
    for (let i = 0; i < names.length; i += step, n++) sum += Number(await client.call("MEMORY", "USAGE", names[i] as string, "SAMPLES", "0"));
    return (sum / Math.max(1, n)) * total;
  };
  // Index key names from the records themselves (with keys they are tokens, not the names given).
  const stored = async (field: string): Promise<string[]> => {
    const names = new Set<string>();
    for (let i = 0; i < sessionIds.length && names.size < 2000; i += 7) names.add(String(await client.hget(keys.record(sessionIds[i] as string), field)));
    return [...names];
  };
  const users = (await stored("u")).map((u) => keys.userIndex(u));
  // A bucketed index (src/store/redis/lua/indexes.ts): its directory and every bucket it names.
  const bucketed = async (directory: string, bucket: (lowerBound: string) => string): Promise<string[]> => [
    directory,
    ...(await client.zrange(directory, "0", "-1")).map(bucket),
  ];
  const sources: string[] = [];
  for (const d of await stored("d")) sources.push(...(await bucketed(keys.dataSourceDirectory(d), (lb) => keys.dataSourceBucket(d, lb))));
  const everyKey = (names: readonly string[]): Promise<number> => sampled(names, names.length);
  const kinds: Record<string, number> = {
    "record (HASH, one per session)": await sampled(sessionIds.map((id) => keys.record(id)), SESSIONS),
    "due queue P dx (ZSET, one member per data source)": dueQueueBytes,
    "user index (ZSET per user)": await sampled(users, USERS),
    "data-source index (per data source: directory ZSET and bucket ZSETs)": await everyKey(sources),
    "tenant-wide index (directory ZSET and bucket ZSETs)": await everyKey(await bucketed(keys.allDirectory(), (lb) => keys.allBucket(lb))),
    "counters P T:m (HASH)": await sampled([keys.counters()], 1),
  };
  const attributed = Object.values(kinds).reduce((a, b) => a + b, 0);
  kinds["other: TTL table entries, keyspace buckets"] = withShadow - before - logBytes - attributed;
  const byKind = Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, v / SESSIONS]));
  const stale = await staleBucketBytes(client);

  const report: MemoryReport = {
    sessions: SESSIONS,
    createSeconds,
    sealed: !PLAINTEXT,
    metadataBytes,
    bytesPerSession: (withShadow - before - logBytes) / SESSIONS,
    bytesPerSessionWithoutShadow: (withoutShadow - before - logBytes) / SESSIONS,
    staleBucketBytesPerSession: stale / SESSIONS,
    eventLogBytes: logBytes,
    eventLogEntries: logEntries,
    byKind,
  };
  console.log(`sessions: ${SESSIONS}, created in ${(createSeconds * 1000).toFixed(0)} ms`);
  console.log(`used_memory delta: ${withShadow - before} bytes, of which the event log: ${logBytes} bytes (${(logBytes / logEntries).toFixed(1)} per event)`);
  console.log(`bytes per session: ${report.bytesPerSession.toFixed(1)} with the expiry machinery (target < 700)`);
  console.log(
    `bytes per session without it (due queue deleted): ${report.bytesPerSessionWithoutShadow.toFixed(1)} (target < 600), ` +
      `of which ${report.staleBucketBytesPerSession.toFixed(1)} are keyspace buckets beyond what the keys need`,
  );
  for (const [kind, bytes] of Object.entries(byKind)) console.log(`  ${kind}: ${bytes.toFixed(1)} B per session`);
  console.log(JSON.stringify(report));
} finally {
  await settings?.stop();
  await store.dispose();
  client.disconnect();
  await server.stop();
}
