import { RedisStore } from "../src/store/redis/redis-store.js";
import { DEFAULT_KEY_PREFIX } from "../src/store/redis/keys.js";
import { startRedisServer } from "../test/support/redis-server.js";
import { BenchSealer } from "../bench/expiry-schedule.js";
const sealer = new BenchSealer();
const server = await startRedisServer();
const client = server.client();
const rs = new RedisStore({ url: server.url, keyPrefix: DEFAULT_KEY_PREFIX, limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 300_000 }, commandTimeoutMs: 5000 });
const store = sealer.wrap(rs);
const w = await rs.watchDue(() => {});
for (let i = 0; i < 3; i++) {
  await store.create({ tenant: "default", ...sealer.sealed("default", JSON.stringify({ client: "web", region: "eu-west-1", n: i })), userId: `user-0000${i}`, dataSource: `source-${i}`, accessLevel: "read", ttlMs: 3600000, requestId: "" });
}
for (const k of await client.keys("*")) {
  const t = await client.type(k);
  console.log(k, t, await client.call("MEMORY", "USAGE", k, "SAMPLES", "0"), await client.call("OBJECT", "ENCODING", k));
  if (t === "hash" && !k.endsWith(":m")) console.log(await client.hgetall(k));
}
await w.stop(); await store.dispose(); client.disconnect(); await server.stop();
