/**
 * Node CPU per create, two builds side by side (README "The gRPC path", what a
 * CreateSession costs): SessionManager.create on RedisStore behind the sealing
 * wrapper, with the event reader and expiry scheduler running, as the service
 * composes them; one private redis-server, 64 concurrent callers.
 *
 *   npm run build; (cd <other checkout> && npm run build)
 *   node --import tsx bench/create-cost-ab.ts <other checkout> [rounds] [phase ms]
 *
 * Both builds (`dist/`) are loaded into this one process, each with its own
 * key prefix; phases alternate (the order reversed every other round), so the
 * two meet the same load on a shared machine. CPU per create from
 * process.cpuUsage over each phase; prints the medians and the median of the
 * per-round ratios (this checkout / the other).
 */
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { pino } from "pino";
import { startRedisServer } from "../test/support/redis-server.js";
import { openBuildStack } from "./build-stack.js";

type AppModule = typeof import("../src/app.js");

const CONCURRENCY = 64;
const other = process.argv[2];
if (other === undefined) throw new Error("usage: node --import tsx bench/create-cost-ab.ts <other checkout> [rounds] [phase ms]");
const ROUNDS = Number(process.argv[3] ?? 20);
const PHASE_MS = Number(process.argv[4] ?? 600);

interface Stack {
  readonly name: string;
  readonly create: (i: number) => Promise<unknown>;
  readonly stop: () => Promise<void>;
  readonly cpu: number[];
}

const redis = await startRedisServer();
const logger = pino({ level: "silent" });
const key = randomBytes(32);

async function stackOf(name: string, root: string, prefix: string): Promise<Stack> {
  const { dist, store, manager, config } = await openBuildStack({ root, redisUrl: redis.url, keyPrefix: prefix, key, logger });
  const { createBackground } = (await import(`${dist}/app.js`)) as AppModule;
  const background = createBackground(store, config, logger);
  await background.start();
  return {
    name,
    create: (i) =>
      manager.create("default", { userId: `user-${i % 100}`, dataSource: "warehouse-a", accessLevel: "read", ttlMs: 3_600_000, metadata: { app: "web", ip: "203.0.113.7", n: i % 100 } }),
    stop: async () => {
      await background.stop();
      await store.dispose();
    },
    cpu: [],
  };
}

let next = 0;
async function phase(stack: Stack): Promise<number> {
  let done = 0;
  const until = Date.now() + PHASE_MS;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < until) {
        await stack.create(next++);
        done += 1;
      }
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / done;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

const stacks = [await stackOf("other", other, "ab0:"), await stackOf("this", resolve("."), "ab1:")];
try {
  for (const stack of stacks) await phase(stack); // warm-up, not counted
  for (let round = 0; round < ROUNDS; round++) {
    for (const stack of round % 2 === 0 ? stacks : [...stacks].reverse()) stack.cpu.push(await phase(stack));
  }
  const [a, b] = stacks as [Stack, Stack];
  const ratios = b.cpu.map((x, i) => x / (a.cpu[i] ?? Number.NaN));
  for (const s of stacks) console.log(`${s.name}: ${median(s.cpu).toFixed(1)} µs Node CPU per create (median of ${ROUNDS} phases of ${PHASE_MS} ms)`);
  console.log(`this / other: ${median(ratios).toFixed(3)}× (per-round ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`);
} finally {
  for (const s of stacks) await s.stop();
  await redis.stop();
}
process.exit(0);
