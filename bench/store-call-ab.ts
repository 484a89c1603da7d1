/**
 * Node CPU per RedisStore get and create, two builds side by side (the cost of
 * the store's call path: fcall-batcher.ts, ioredis), with concurrent callers
 * in waves (default 64, as a loaded server makes them; 1: a quiet one); one
 * private redis-server.
 *
 *   npm run build; (cd <other checkout> && npm run build)
 *   node --import tsx bench/store-call-ab.ts <other checkout> [rounds] [calls per phase] [callers]
 *
 * Both builds' dist/ are loaded into this one process, each with its own key
 * prefix; phases alternate (order reversed every other round). CPU per call
 * from process.cpuUsage over each phase (this process only: redis-server's
 * CPU is not in it). Prints the medians and the median (min–max) of the
 * per-round ratios (this checkout / the other).
 */
import { resolve } from "node:path";
import { loadavg } from "node:os";
import { startRedisServer } from "../test/support/redis-server.js";

type StoreModule = typeof import("../src/store/redis/redis-store.js");
type Store = InstanceType<StoreModule["RedisStore"]>;

const other = process.argv[2];
if (other === undefined) throw new Error("usage: node --import tsx bench/store-call-ab.ts <other checkout> [rounds] [calls per phase]");
const ROUNDS = Number(process.argv[3] ?? 15);
const CALLS = Number(process.argv[4] ?? 4096);
const WAVE = Number(process.argv[5] ?? 64);

const redis = await startRedisServer();
const limits = { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000, maxSessionsPerUser: 0 };

interface Build {
  readonly name: string;
  readonly store: Store;
  readonly id: string;
  readonly cpu: Record<"get" | "create", number[]>;
}

async function open(name: string, root: string, prefix: string): Promise<Build> {
  const { RedisStore } = (await import(resolve(root, "dist/src/store/redis/redis-store.js"))) as StoreModule;
  const store = new RedisStore({ url: redis.url, keyPrefix: prefix, limits, commandTimeoutMs: 30_000 });
  const { session } = await store.create(input(0));
  return { name, store, id: session.sessionId, cpu: { get: [], create: [] } };
}

function input(i: number): Parameters<Store["create"]>[0] {
  return { tenant: "default", userId: `user-${i % 1000}`, dataSource: "warehouse-a", accessLevel: "read", ttlMs: 3_600_000, metadata: `{"app":"web","n":${i % 100}}`, requestId: "" };
}

async function phase(build: Build, op: "get" | "create"): Promise<number> {
  const start = process.cpuUsage();
  for (let done = 0; done < CALLS; done += WAVE) {
    await Promise.all(
      Array.from({ length: WAVE }, (_, i) => (op === "get" ? build.store.get("default", build.id, { touch: true, includeEnded: false }) : build.store.create(input(done + i)))),
    );
  }
  const used = process.cpuUsage(start);
  return (used.user + used.system) / CALLS;
}

const builds = [await open("this", resolve("."), "a:"), await open("other", resolve(other), "b:")];
const loadStart = loadavg()[0];
for (let round = 0; round < ROUNDS + 1; round++) {
  const order = round % 2 === 0 ? builds : [...builds].reverse();
  for (const op of ["get", "create"] as const) {
    for (const build of order) {
      const us = await phase(build, op);
      if (round > 0) build.cpu[op].push(us); // round 0 warms up
    }
  }
}
for (const build of builds) await build.store.dispose();
await redis.stop();

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
const [a, b] = builds as [Build, Build];
console.log(`load average ${loadStart?.toFixed(1)} at start, ${loadavg()[0]?.toFixed(1)} at end; ${ROUNDS} rounds of ${CALLS} calls, ${WAVE} at a time`);
for (const op of ["get", "create"] as const) {
  const ratios = a.cpu[op].map((x, i) => x / (b.cpu[op][i] ?? Number.NaN));
  console.log(
    `${op}: this ${median(a.cpu[op]).toFixed(1)} µs/call, other ${median(b.cpu[op]).toFixed(1)} µs/call; this/other ${median(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
  );
}
