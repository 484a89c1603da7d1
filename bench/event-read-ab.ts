/**
 * Node CPU per event the event reader reads, two builds side by side: every
 * process's EventHub reads every entry of the event log (README "Watching
 * sessions"), so with WORKERS=n each write is read n times. One private
 * redis-server; a log of realistic entries (sessions created through
 * SessionManager on the sealing store, encryption on) is read whole through
 * each build's event tail (XREAD on the reader's own connection, then decoding
 * and opening the sealed names), in batches of 64 as a loaded service reads it.
 *
 *   npm run build; (cd <other checkout> && npm run build)
 *   node --import tsx bench/event-read-ab.ts <other checkout> [rounds] [events]
 *
 * Both builds' dist/ are loaded into this one process; each writes its own
 * log (its own key prefix, in its own entry form: event-codec.ts) with the same
 * sessions and reads it whole, passes alternating, the order reversed every
 * other round. CPU per event from process.cpuUsage over each pass (this
 * process only: redis-server's CPU is not in it). Prints the medians and the
 * median (min–max) of the per-round ratios (this checkout / the other).
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { pino } from "pino";
import type { EventTail } from "../src/store/store.js";
import { startRedisServer } from "../test/support/redis-server.js";

type StoreModule = typeof import("../src/store/redis/redis-store.js");
type SealedModule = typeof import("../src/store/sealed-store.js");
type CipherModule = typeof import("../src/crypto/field-cipher.js");
type KeyringModule = typeof import("../src/crypto/keyring.js");
type ManagerModule = typeof import("../src/session/session-manager.js");
type Config = import("../src/config/config.js").Config;
type SealedStore = Awaited<ReturnType<SealedModule["openSealedStore"]>>;

const other = process.argv[2];
if (other === undefined) throw new Error("usage: node --import tsx bench/event-read-ab.ts <other checkout> [rounds] [events]");
const ROUNDS = Number(process.argv[3] ?? 16);
const EVENTS = Number(process.argv[4] ?? 6400);
const BATCH = 64;

const redis = await startRedisServer();
const logger = pino({ level: "silent" });
const key = randomBytes(32);
const limits = {
  maxDataKeys: 100,
  maxDataBytes: 1 << 20,
  maxSessionsPerUser: 0,
  maxSessionsPerTenant: 0,
  maxDataSourcesPerTenant: 0,
  sessionsPerUserPolicy: "reject" as const,
  archiveRetentionMs: 86_400_000,
  expiryGraceMs: 3_600_000,
  eventRetentionCount: EVENTS * 2,
  eventRetentionMs: 3_600_000,
};

interface Reader {
  readonly name: string;
  readonly store: SealedStore;
  readonly tail: EventTail;
  readonly cpu: number[];
}

async function open(name: string, root: string, prefix: string): Promise<{ reader: Reader; dist: string }> {
  const dist = resolve(root, "dist/src");
  const { RedisStore } = (await import(`${dist}/store/redis/redis-store.js`)) as StoreModule;
  const { openSealedStore } = (await import(`${dist}/store/sealed-store.js`)) as SealedModule;
  const { AesGcmFieldCipher } = (await import(`${dist}/crypto/field-cipher.js`)) as CipherModule;
  const { Keyring } = (await import(`${dist}/crypto/keyring.js`)) as KeyringModule;
  const cipher = new AesGcmFieldCipher(new Keyring([{ id: "k1", key }]));
  const store = await openSealedStore(new RedisStore({ url: redis.url, keyPrefix: prefix, limits, commandTimeoutMs: 30_000, logger }), cipher, logger);
  return { reader: { name, store, tail: store.openEventTail(), cpu: [] }, dist };
}

async function fill(dist: string, store: SealedStore): Promise<void> {
  const { SessionManager } = (await import(`${dist}/session/session-manager.js`)) as ManagerModule;
  const { AesGcmFieldCipher } = (await import(`${dist}/crypto/field-cipher.js`)) as CipherModule;
  const { Keyring } = (await import(`${dist}/crypto/keyring.js`)) as KeyringModule;
  const config = { ttl: { defaultMs: 3_600_000, minMs: 1000, maxMs: 86_400_000 }, limits: { maxMetadataBytes: 16_384, maxDataValueBytes: 65_536 } } as unknown as Config;
  const manager = new SessionManager({ store, config, cipher: new AesGcmFieldCipher(new Keyring([{ id: "k1", key }])), logger });
  for (let i = 0; i < EVENTS; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, EVENTS - i) }, (_, j) =>
        manager.create("default", { userId: `user-${(i + j) % 100}`, dataSource: "warehouse-a", accessLevel: "read", ttlMs: 3_600_000, metadata: { app: "web", ip: "203.0.113.7", n: j } }),
      ),
    );
  }
}

/** Reads the whole log; Node CPU per event read. */
async function pass(reader: Reader): Promise<number> {
  const before = process.cpuUsage();
  let position = "0-0";
  let read = 0;
  for (;;) {
    const events = await reader.tail.read(position, BATCH, 1);
    const last = events.at(-1);
    if (last === undefined) break;
    read += events.length;
    position = last.id;
  }
  const used = process.cpuUsage(before);
  if (read !== EVENTS) throw new Error(`${reader.name} read ${read} events of ${EVENTS}`);
  return (used.user + used.system) / read;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

const a = await open("other", other, "er0:");
const b = await open("this", ".", "er1:");
const readers = [a.reader, b.reader];
try {
  await fill(a.dist, a.reader.store);
  await fill(b.dist, b.reader.store);
  for (const reader of readers) await pass(reader); // warm-up, not counted
  for (let round = 0; round < ROUNDS; round++) {
    for (const reader of round % 2 === 0 ? readers : [...readers].reverse()) reader.cpu.push(await pass(reader));
  }
  const ratios = b.reader.cpu.map((x, i) => x / (a.reader.cpu[i] ?? Number.NaN));
  for (const r of readers) console.log(`${r.name}: ${median(r.cpu).toFixed(2)} µs Node CPU per event read (median of ${ROUNDS} passes over ${EVENTS} events)`);
  console.log(`this / other: ${median(ratios).toFixed(3)}× (per-round ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`);
} finally {
  for (const r of readers) {
    r.tail.close();
    await r.store.dispose();
  }
  await redis.stop();
}
process.exit(0);
