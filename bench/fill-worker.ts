/**
 * One share of a fill (bench/populations.ts, fillInProcesses): creates its
 * range of a population's sessions through RedisStore and exits 0.
 *
 *   node --import tsx bench/fill-worker.ts '<FillJob as JSON>'
 */
import { RedisStore } from "../src/store/redis/redis-store.js";
import { BenchSealer, fill } from "./expiry-schedule.js";
import { populationSession, type FillJob } from "./populations.js";

const job = JSON.parse(process.argv[2] ?? "{}") as FillJob;
const redisStore = new RedisStore({ url: job.redisUrl, keyPrefix: job.keyPrefix, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000 }, commandTimeoutMs: 60_000 });
const sealer = job.keys === undefined ? undefined : new BenchSealer(job.keys);
// With keys, as the service with them writes: through the sealing wrapper.
const store = sealer === undefined ? redisStore : sealer.wrap(redisStore);
try {
  await fill(store, job.from, job.to, (i) => populationSession(job.population, sealer, i));
} finally {
  await store.dispose();
}
process.exit(0);
