/**
 * Catching up a backlog of the merged event log on a 3-primary loopback
 * cluster (16 partitions), A/B between checkouts in the same run:
 *
 *   node --import tsx bench/cluster-catch-up.ts [label=root ...]   # default: this checkout, "current"
 *
 * Writes CATCH_UP_EVENTS creates once, then each round follows the whole log
 * from its start through an event tail (pages of 200, as the event hub reads)
 * with every variant's RedisStore in turn (interleaved, so the machine's load
 * hits them alike): events per second delivered, and bytes the primaries sent
 * per event delivered (INFO stats total_net_output_bytes). Prints one line
 * per variant and round, then a JSON summary.
 */
import { loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startRedisCluster } from "../test/support/redis-cluster.js";
import type { RedisStore as RedisStoreType } from "../src/store/redis/redis-store.js";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const num = (name: string, fallback: number): number => Number(process.env[name] || String(fallback));
const ROUNDS = num("CATCH_UP_ROUNDS", 3);
const EVENTS = num("CATCH_UP_EVENTS", 13_000);
const PAGE = 200;
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 600_000, expiryGraceMs: 600_000, eventRetentionCount: 1_000_000 };

const variants = process.argv.slice(2).map((arg) => {
  const [label, root] = arg.split("=") as [string, string];
  return { label, root: resolve(root) };
});
if (variants.length === 0) variants.push({ label: "current", root: ROOT });

type StoreClass = typeof RedisStoreType;
const classes = new Map<string, StoreClass>();
for (const v of variants) {
  const module = (await import(pathToFileURL(`${v.root}/src/store/redis/redis-store.ts`).href)) as { RedisStore: StoreClass };
  classes.set(v.label, module.RedisStore);
}

const cluster = await startRedisCluster({ primaries: 3, replicas: 0 });
const nodes = cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port }));
const open = (label: string): RedisStoreType => {
  const Store = classes.get(label) as StoreClass;
  return new Store({ url: "", cluster: { nodes }, keyPrefix: "cu:", partitions: 16, limits: LIMITS, commandTimeoutMs: 10_000 });
};
const sent = async (): Promise<number> => {
  let total = 0;
  for (const n of cluster.nodes) {
    const c = cluster.client(n);
    total += Number(/total_net_output_bytes:(\d+)/.exec(await c.info("stats"))?.[1]);
    c.disconnect();
  }
  return total;
};

try {
  const writer = open(variants[0]?.label as string);
  for (let i = 0; i < EVENTS; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, EVENTS - i) }, (_, k) =>
        writer.create({ tenant: "t", userId: `u-${i + k}`, dataSource: "d", accessLevel: "read", ttlMs: 3_600_000, metadata: "{}", requestId: "" }),
      ),
    );
  }
  await writer.dispose();
  const all = new Map<string, { rate: number; bytesPerEvent: number; load: number }[]>(variants.map((v) => [v.label, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of r % 2 === 0 ? variants : [...variants].reverse()) {
      const store = open(v.label);
      const tail = store.openEventTail();
      const bytesBefore = await sent();
      const started = performance.now();
      let seen = 0;
      for (let cursor = "0-0"; seen < EVENTS; ) {
        const batch = await tail.read(cursor, PAGE, 1000);
        seen += batch.length;
        cursor = batch.at(-1)?.id ?? cursor;
      }
      const seconds = (performance.now() - started) / 1000;
      const bytes = (await sent()) - bytesBefore;
      tail.close();
      await store.dispose();
      const result = { rate: seen / seconds, bytesPerEvent: bytes / seen, load: loadavg()[0] ?? Number.NaN };
      all.get(v.label)?.push(result);
      console.error(`round ${r + 1} ${v.label}: ${seen} events in ${seconds.toFixed(2)} s = ${result.rate.toFixed(0)} events/s; ${result.bytesPerEvent.toFixed(0)} B sent per event; load ${result.load.toFixed(2)}`);
    }
  }
  const summary = Object.fromEntries(
    [...all].map(([label, results]) => {
      const mean = (f: (x: { rate: number; bytesPerEvent: number; load: number }) => number): number => results.reduce((t, x) => t + f(x), 0) / results.length;
      return [label, { eventsPerS: Math.round(mean((x) => x.rate)), bytesPerEvent: Math.round(mean((x) => x.bytesPerEvent)), load: +mean((x) => x.load).toFixed(2) }];
    }),
  );
  console.log(JSON.stringify(summary, null, 2));
} finally {
  await cluster.stop();
}
