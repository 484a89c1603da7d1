/**
 * Start on Redis: a change the service makes to the Redis server's settings
 * (hash-max-listpack-value) is logged, naming the old and new value; a start
 * that changes nothing logs no such line; notify-keyspace-events is never
 * touched (expiry needs no keyspace notification).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { useRedisServer } from "./support/redis-server.js";
import { captureLogs, startTestApp } from "./support/server.js";

const redis = useRedisServer(["--notify-keyspace-events", "g"]);

test("the hash-max-listpack-value change is logged once, with from and to; notify-keyspace-events stays", async () => {
  const first = captureLogs("info");
  const app = await startTestApp({ redisUrl: redis.url, logger: first.logger });
  try {
    const changed = first.lines().filter((l) => l["setting"] === "hash-max-listpack-value");
    assert.equal(changed.length, 1, first.text());
    assert.equal(changed[0]?.["from"], 64);
    assert.equal(changed[0]?.["to"], 512);
    assert.equal(changed[0]?.["level"], 30);
    const [, now] = (await redis.raw.config("GET", "hash-max-listpack-value")) as [string, string];
    assert.equal(now, "512");
    assert.equal(first.lines().filter((l) => l["setting"] === "notify-keyspace-events").length, 0, first.text());
    const [, flags] = (await redis.raw.config("GET", "notify-keyspace-events")) as [string, string];
    assert.equal(flags, "g");
  } finally {
    await app.close();
  }
  const second = captureLogs("info");
  const again = await startTestApp({ redisUrl: redis.url, logger: second.logger });
  await again.close();
  assert.equal(second.lines().filter((l) => l["setting"] === "hash-max-listpack-value").length, 0, "nothing changed, nothing logged");
});
