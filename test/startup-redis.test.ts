/**
 * Start on Redis: a change the service makes to the Redis server's settings
 * (notify-keyspace-events) is logged, naming the old and new value; a start
 * that changes nothing logs no such line.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { useRedisServer } from "./support/redis-server.js";
import { captureLogs, startTestApp } from "./support/server.js";

const redis = useRedisServer(["--notify-keyspace-events", "g"]);

test("the notify-keyspace-events change is logged once, with from and to", async () => {
  const first = captureLogs("info");
  const app = await startTestApp({ redisUrl: redis.url, logger: first.logger });
  try {
    const changed = first.lines().filter((l) => l["setting"] === "notify-keyspace-events");
    assert.equal(changed.length, 1, first.text());
    assert.equal(changed[0]?.["from"], "g");
    assert.equal(changed[0]?.["to"], "gEx");
    assert.equal(changed[0]?.["level"], 30);
    const [, now] = (await redis.raw.config("GET", "notify-keyspace-events")) as [string, string];
    assert.equal([...now].sort().join(""), ["E", "g", "x"].sort().join(""));
  } finally {
    await app.close();
  }
  const second = captureLogs("info");
  const again = await startTestApp({ redisUrl: redis.url, logger: second.logger });
  await again.close();
  assert.equal(second.lines().filter((l) => l["setting"] === "notify-keyspace-events").length, 0, "nothing changed, nothing logged");
});
