/**
 * Measures Redis memory per live session: creates 100k sessions through
 * RedisStore on a private redis-server (10k users, 10 data sources, ~40 bytes of
 * JSON metadata, no request ids) and prints the used_memory delta per session,
 * with all the expiry machinery (indexes, due queue, shadow key). The event log
 * (`P ev`, one CREATED entry per create) is reported apart: it is bounded by
 * WATCH_RETENTION_EVENTS, not by the number of sessions.
 *
 *   npx tsx bench/redis-memory.ts [sessions]
 *
 * Target: < 700 bytes per session (without the event log).
 */
import { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { DEFAULT_KEY_PREFIX } from "../src/store/redis/keys.js";
import { startRedisServer } from "../test/support/redis-server.js";

const SESSIONS = Number(process.argv[2] ?? 100_000);
const USERS = 10_000;
const SOURCES = 10;
const CONCURRENCY = 200;

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info("memory");
  const match = /^used_memory:(\d+)/m.exec(info);
  if (match?.[1] === undefined) throw new Error("used_memory missing from INFO");
  return Number(match[1]);
}

const server = await startRedisServer();
const client = server.client();
const store = new RedisStore({
  url: server.url,
  keyPrefix: DEFAULT_KEY_PREFIX,
  limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 300_000 },
  commandTimeoutMs: 5000,
});
try {
  await store.ping();
  // Warm up: the first script calls load the scripts and create the due queue and counters.
  const warm = await store.create({
    tenant: "default", userId: "warm", dataSource: "warm", accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "",
  });
  await store.close("default", warm.session.sessionId);
  const before = await usedMemory(client);
  const started = Date.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < SESSIONS) {
      const i = next++;
      await store.create({
        tenant: "default",
        userId: `user-${String(i % USERS).padStart(5, "0")}`,
        dataSource: `source-${i % SOURCES}`,
        accessLevel: i % 3 === 0 ? "write" : "read",
        ttlMs: 3_600_000 + (i % 1000) * 1000,
        metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }),
        requestId: "",
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const after = await usedMemory(client);
  const logBytes = Number(await client.call("MEMORY", "USAGE", `${DEFAULT_KEY_PREFIX}ev`, "SAMPLES", "0"));
  const perSession = (after - before - logBytes) / SESSIONS;
  console.log(`sessions: ${SESSIONS}, created in ${Date.now() - started} ms`);
  console.log(`used_memory delta: ${after - before} bytes, of which the event log: ${logBytes} bytes (${(logBytes / SESSIONS).toFixed(1)} per event)`);
  console.log(`bytes per session: ${perSession.toFixed(1)} (target < 700)`);
} finally {
  await store.dispose();
  client.disconnect();
  await server.stop();
}
