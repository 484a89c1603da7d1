import { test } from "node:test";
import assert from "node:assert/strict";
import { startRedisServer } from "./support/redis-server.js";

test("a private redis-server starts, stops and restarts on its port", async () => {
  const server = await startRedisServer();
  const client = server.client();
  try {
    assert.equal(await client.ping(), "PONG");
    await client.set("k", "v");
    await server.stop();
    await server.start();
    assert.equal(await client.get("k"), null, "a restarted server keeps no data");
  } finally {
    client.disconnect();
    await server.stop();
  }
});
