/**
 * Issue 12's figures, on private redis-servers:
 *
 * 1. Archive size: Redis memory per ended session (its archive, kept for
 *    ARCHIVE_RETENTION), with ~40 bytes of JSON metadata sealed by the real
 *    cipher (AES-256-GCM, as on Redis in production). Method: create N
 *    sessions through RedisStore, close them all, and take the used_memory
 *    delta from before the creates, less the event log's own growth (MEMORY
 *    USAGE of the stream), divided by N. Anchor in the same run: the same
 *    archives written as the hashes earlier versions kept (the same ten fields
 *    per session, HSET + PEXPIREAT on keys of the same names under another
 *    prefix). Target: ≤ 400 B.
 * 2. The event log's cost per event with that metadata (for sizing it at
 *    WATCH_RETENTION_EVENTS), and a live session's with it (record, indexes,
 *    the due queue: N more sessions created and left live), for the README's
 *    sizing table.
 * 3. Event delivery after a dropped Redis connection: a service (startApp on
 *    RedisStore) with one watcher (the client helper); Redis drops every
 *    client connection (CLIENT KILL TYPE normal), optionally then pauses for
 *    300 ms (CLIENT PAUSE ALL: "Redis back after 0.3 s"); a session is
 *    created as soon as the service acknowledges writes again, and the time
 *    from Redis answering again to the watcher receiving its CREATED event is
 *    measured. Target: < 1 s (a read dropped without being rejected would
 *    wait for REDIS_COMMAND_TIMEOUT + 5 s).
 *
 *   npx tsx bench/faults-bench.ts [sessions]
 *
 * Prints a few lines for people, then one JSON line (FaultsReport) for bench/run.ts.
 */
import type { Redis } from "ioredis";
import { setTimeout as sleep } from "node:timers/promises";
import { startApp } from "../src/app.js";
import { AccessLevel, Code, ConnectError, createSessionClient, EventType, watchSessions } from "@sessiond/client";
import { loadConfig } from "../src/config/config.js";
import { KeyedFieldCipher, METADATA_FIELD } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { createLogger } from "../src/logging/logger.js";
import { DEFAULT_KEY_PREFIX, RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import type { FaultsReport } from "./parts/faults.js";

const SESSIONS = Number(process.argv[2] ?? 20_000);
const CONCURRENCY = 100;
const TENANT = "default";
const KEY = `k1:${Buffer.alloc(32, 9).toString("base64")}`;
const BLIPS = 10;

async function usedMemory(client: Redis): Promise<number> {
  const match = /^used_memory:(\d+)/m.exec(await client.info("memory"));
  if (match?.[1] === undefined) throw new Error("used_memory missing from INFO");
  return Number(match[1]);
}

async function streamBytes(client: Redis, key: string): Promise<number> {
  return (await client.exists(key)) === 1 ? Number(await client.call("MEMORY", "USAGE", key, "SAMPLES", "0")) : 0;
}

async function measureArchives(): Promise<Omit<FaultsReport, "sessions" | "killDeliveryMs" | "pauseKillDeliveryMs">> {
  const server = await startRedisServer();
  const client = server.client();
  const keys = new RedisKeys(DEFAULT_KEY_PREFIX, TENANT);
  const cipher = new KeyedFieldCipher(parseKeyring(KEY));
  const store = new RedisStore({
    url: server.url,
    keyPrefix: DEFAULT_KEY_PREFIX,
    limits: { maxDataKeys: 100, archiveRetentionMs: 7 * 86_400_000, expiryGraceMs: 300_000, eventRetentionCount: 10 * SESSIONS },
    commandTimeoutMs: 5000,
  });
  const metadata = (i: number): string => JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 });
  let sealedBytes = 0;
  try {
    await store.ping();
    const warm = await store.create({ tenant: TENANT, userId: "warm", dataSource: "warm", accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "" });
    await store.close(TENANT, warm.session.sessionId);
    const logKey = keys.events();
    const before = await usedMemory(client);
    const logBefore = await streamBytes(client, logKey);
    const ids: string[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < SESSIONS) {
        const i = next++;
        const sessionId = crypto.randomUUID();
        const sealed = cipher.seal(metadata(i), { tenant: TENANT, sessionId, field: METADATA_FIELD });
        sealedBytes = sealed.length;
        await store.create({
          tenant: TENANT,
          sessionId,
          userId: `user-${String(i % 1000).padStart(4, "0")}`,
          dataSource: `source-${i % 10}`,
          accessLevel: i % 3 === 0 ? "write" : "read",
          ttlMs: 3_600_000,
          metadata: sealed,
          requestId: "",
        });
        await store.close(TENANT, sessionId);
        ids.push(sessionId);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const after = await usedMemory(client);
    const logAfter = await streamBytes(client, logKey);

    // Live sessions with the same sealed metadata (the record hash holds it), for the sizing table.
    const liveBefore = await usedMemory(client);
    const liveLogBefore = await streamBytes(client, logKey);
    let live = 0;
    const liveWorker = async (): Promise<void> => {
      while (live < SESSIONS) {
        const i = live++;
        const sessionId = crypto.randomUUID();
        await store.create({
          tenant: TENANT,
          sessionId,
          userId: `live-${String(i % 1000).padStart(4, "0")}`,
          dataSource: `source-${i % 10}`,
          accessLevel: "read",
          ttlMs: 3_600_000 + (i % 1000) * 1000,
          metadata: cipher.seal(metadata(i), { tenant: TENANT, sessionId, field: METADATA_FIELD }),
          requestId: "",
        });
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, liveWorker));
    const liveBytesPerSession = ((await usedMemory(client)) - liveBefore - ((await streamBytes(client, logKey)) - liveLogBefore)) / SESSIONS;
    const entries = await client.xlen(logKey);
    const archiveBytesPerSession = (after - before - (logAfter - logBefore)) / SESSIONS;

    // Anchor: the same archives as hashes (the layout before this change), under another prefix.
    const hashBefore = await usedMemory(client);
    for (let i = 0; i < ids.length; i += 500) {
      const batch = client.pipeline();
      for (const sid of ids.slice(i, i + 500)) {
        const key = `sh:${TENANT}:{${sid}}:a`;
        const now = Date.now();
        batch.hset(key, "u", "user-0001", "d", "source-1", "l", "read", "c", String(now), "e", String(now + 3_600_000), "a", String(now), "m", cipher.seal(metadata(i), { tenant: TENANT, sessionId: sid, field: METADATA_FIELD }), "v", "2", "s", "closed", "t", String(now));
        batch.pexpireat(key, now + 7 * 86_400_000);
      }
      await batch.exec();
    }
    const hashArchiveBytesPerSession = ((await usedMemory(client)) - hashBefore) / SESSIONS;
    return {
      metadataBytes: Buffer.byteLength(metadata(0)),
      sealedMetadataBytes: sealedBytes,
      archiveBytesPerSession,
      hashArchiveBytesPerSession,
      liveBytesPerSession,
      eventLogBytesPerEvent: (logAfter - logBefore) / Math.max(1, entries - 2),
    };
  } finally {
    await store.dispose();
    client.disconnect();
    await server.stop();
  }
}

async function measureDelivery(pauseMs: number): Promise<number[]> {
  const server = await startRedisServer();
  const config = loadConfig({ HOST: "127.0.0.1", PORT: "0", REDIS_URL: server.url, ENCRYPTION_KEYS: KEY, AUDIT_LOG: "off", LOG_LEVEL: "silent" });
  const app = await startApp(config, { logger: createLogger({ level: "silent" }) });
  const client = createSessionClient(app.url, { timeoutMs: 5000 });
  const abort = new AbortController();
  const seen = new Map<string, number>();
  const watching = (async () => {
    for await (const event of watchSessions(client, { eventTypes: [EventType.CREATED] }, { signal: abort.signal, initialBackoffMs: 20 })) {
      if (event.type === EventType.CREATED) seen.set(event.session?.sessionId ?? "", performance.now());
    }
  })();
  const delays: number[] = [];
  try {
    while (app.events.subscriberCount < 1) await sleep(10);
    for (let blip = 0; blip < BLIPS; blip += 1) {
      const killer = server.client();
      await killer.call("CLIENT", "KILL", "TYPE", "normal");
      // Then unresponsive for pauseMs while the service reconnects.
      if (pauseMs > 0) await killer.call("CLIENT", "PAUSE", String(pauseMs), "ALL");
      killer.disconnect();
      // Redis answers again: the pause is over (a fresh connection's PING returns).
      const probe = server.client();
      await probe.ping();
      const back = performance.now();
      probe.disconnect();
      let id = "";
      while (id === "") {
        try {
          id = (await client.createSession({ userId: "blip", dataSource: "bench", accessLevel: AccessLevel.READ, requestId: `blip-${pauseMs}-${blip}` })).session?.sessionId ?? "";
        } catch (error) {
          const code = ConnectError.from(error).code;
          if (code !== Code.Unavailable && code !== Code.Unknown && code !== Code.DeadlineExceeded) throw error;
          await sleep(10);
        }
      }
      const deadline = performance.now() + 30_000;
      while (!seen.has(id) && performance.now() < deadline) await sleep(2);
      delays.push((seen.get(id) ?? Number.NaN) - back);
      await sleep(200);
    }
  } finally {
    abort.abort();
    await watching.catch(() => {});
    await app.close();
    await server.stop();
  }
  return delays;
}

const archives = await measureArchives();
const killDeliveryMs = await measureDelivery(0);
const pauseKillDeliveryMs = await measureDelivery(300);
const report: FaultsReport = { sessions: SESSIONS, ...archives, killDeliveryMs, pauseKillDeliveryMs };
const fmt = (xs: readonly number[]): string => xs.map((x) => x.toFixed(0)).join(", ");
console.log(`archives: ${SESSIONS} sessions created and closed; metadata ${archives.metadataBytes} B JSON, ${archives.sealedMetadataBytes} B sealed`);
console.log(`bytes per ended session: ${archives.archiveBytesPerSession.toFixed(1)} (target <= 400); as hashes (earlier layout): ${archives.hashArchiveBytesPerSession.toFixed(1)}`);
console.log(`event log: ${archives.eventLogBytesPerEvent.toFixed(1)} bytes per event`);
console.log(`live session with this sealed metadata: ${archives.liveBytesPerSession.toFixed(1)} bytes (record, indexes)`);
console.log(`delivery after CLIENT KILL, ms from Redis answering: ${fmt(killDeliveryMs)}`);
console.log(`delivery after CLIENT PAUSE 300 ms + KILL, ms from Redis answering: ${fmt(pauseKillDeliveryMs)}`);
console.log(JSON.stringify(report));
process.exit(0);
