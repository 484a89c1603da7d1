/**
 * Node CPU per event the event reader reads, two builds side by side: every
 * process's EventHub reads every entry of the event log (README "Watching
 * sessions"), so with WORKERS=n each write is read n times. One private
 * redis-server; a log of realistic entries (sessions created through
 * SessionManager on the sealing store, encryption on) is read whole through
 * each build's event tail (XREAD on the reader's own connection, then decoding
 * and opening the sealed names), in batches of 64 as a loaded service reads it.
 * A build whose tail has readEntries is read with it, as its EventHub reads
 * when the process has no watch of the log's tenant: entries' heads only.
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
import { pino } from "pino";
import type { EventTail } from "../src/store/store.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { openBuildStack, type Manager, type SealedStore } from "./build-stack.js";
import { median, spread } from "./statistics.js";

const other = process.argv[2];
if (other === undefined) throw new Error("usage: node --import tsx bench/event-read-ab.ts <other checkout> [rounds] [events]");
const ROUNDS = Number(process.argv[3] ?? 16);
const EVENTS = Number(process.argv[4] ?? 6400);
const BATCH = 64;

const redis = await startRedisServer();
const logger = pino({ level: "silent" });
const key = randomBytes(32);

interface Reader {
  readonly name: string;
  readonly store: SealedStore;
  readonly manager: Manager;
  readonly tail: EventTail;
  readonly cpu: number[];
}

async function open(name: string, root: string, prefix: string): Promise<Reader> {
  const { store, manager } = await openBuildStack({ root, redisUrl: redis.url, keyPrefix: prefix, key, logger, eventRetentionCount: EVENTS * 2 });
  return { name, store, manager, tail: store.openEventTail(), cpu: [] };
}

/** Writes EVENTS creates to the reader's log, BATCH at a time. */
async function fill(reader: Reader): Promise<void> {
  for (let i = 0; i < EVENTS; i += BATCH) {
    await Promise.all(
      Array.from({ length: Math.min(BATCH, EVENTS - i) }, (_, j) =>
        reader.manager.create("default", { userId: `user-${(i + j) % 100}`, dataSource: "warehouse-a", accessLevel: "read", ttlMs: 3_600_000, metadata: { app: "web", ip: "203.0.113.7", n: j } }),
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
    // As the event reader of a process without watches: heads only, where the build's tail reads them.
    const events = reader.tail.readEntries !== undefined ? await reader.tail.readEntries(position, BATCH, 1) : await reader.tail.read(position, BATCH, 1);
    const last = events.at(-1);
    if (last === undefined) break;
    read += events.length;
    position = last.id;
  }
  const used = process.cpuUsage(before);
  if (read !== EVENTS) throw new Error(`${reader.name} read ${read} events of ${EVENTS}`);
  return (used.user + used.system) / read;
}

const a = await open("other", other, "er0:");
const b = await open("this", ".", "er1:");
const readers = [a, b];
try {
  await fill(a);
  await fill(b);
  for (const reader of readers) await pass(reader); // warm-up, not counted
  for (let round = 0; round < ROUNDS; round++) {
    for (const reader of round % 2 === 0 ? readers : [...readers].reverse()) reader.cpu.push(await pass(reader));
  }
  const ratios = b.cpu.map((x, i) => x / (a.cpu[i] ?? Number.NaN));
  for (const r of readers) console.log(`${r.name}: ${median(r.cpu).toFixed(2)} µs Node CPU per event read (median of ${ROUNDS} passes over ${EVENTS} events)`);
  console.log(`this / other: ${median(ratios).toFixed(3)}× (per-round ${spread(ratios)})`);
} finally {
  for (const r of readers) {
    r.tail.close();
    await r.store.dispose();
  }
  await redis.stop();
}
process.exit(0);
