/**
 * RedisStore.keepServerSettings (the service's start) raises Redis's
 * hash-max-listpack-value so that records with sealed metadata (longer than
 * Redis's default 64-byte listpack limit) stay compact; it never lowers an
 * operator's higher value, sets it again after a Redis restart, and a Redis
 * that refuses CONFIG still starts (records are then only larger).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { KeyedFieldCipher, METADATA_FIELD } from "../src/crypto/field-cipher.js";
import { RedisKeys } from "../src/store/redis/keys.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { HASH_VALUE_BYTES } from "../src/store/redis/compact-hashes.js";
import type { StoreLimits } from "../src/store/store.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";

const PREFIX = "t:";
const TENANT = "acme";
const limits: StoreLimits = { maxDataKeys: 10, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };
const cipher = KeyedFieldCipher.ephemeral();

/** Creates a session with sealed metadata, as the service stores it, and returns its record's encoding. */
async function recordEncoding(server: RedisServerHandle, store: RedisStore): Promise<string> {
  const sessionId = randomUUID();
  const metadata = cipher.seal(JSON.stringify({ client: "web", region: "eu-west-1", n: 7 }), { tenant: TENANT, sessionId, field: METADATA_FIELD });
  assert.ok(metadata.length > 64, "sealed metadata is longer than Redis's default listpack value limit");
  await store.create({ tenant: TENANT, sessionId, userId: "u", dataSource: "d", accessLevel: "read", ttlMs: 60_000, metadata, requestId: "" });
  const raw = server.client();
  try {
    return String(await raw.object("ENCODING", new RedisKeys(PREFIX, TENANT).record(sessionId)));
  } finally {
    raw.disconnect();
  }
}

async function setting(server: RedisServerHandle): Promise<number> {
  const raw = server.client();
  try {
    const [, value] = (await raw.config("GET", "hash-max-listpack-value")) as [string, string];
    return Number(value);
  } finally {
    raw.disconnect();
  }
}

describe("compact session records (hash-max-listpack-value)", () => {
  it("raises the threshold at keepServerSettings, so a record with sealed metadata is a listpack; again after a restart", async () => {
    const server = await startRedisServer();
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 2000 });
    try {
      assert.equal(await setting(server), 64, "Redis's default");
      assert.equal(await recordEncoding(server, store), "hashtable", "without the setting, sealed metadata makes the record a hash table");
      const watch = await store.keepServerSettings();
      try {
        assert.equal(await setting(server), HASH_VALUE_BYTES);
        assert.equal(await recordEncoding(server, store), "listpack");
        await server.stop();
        await server.start(); // forgets CONFIG SET
        const deadline = Date.now() + 15_000;
        while ((await setting(server).catch(() => 0)) !== HASH_VALUE_BYTES) {
          assert.ok(Date.now() < deadline, "the threshold is set again after the restart");
          await sleep(50);
        }
      } finally {
        await watch.stop();
      }
    } finally {
      await store.dispose();
      await server.stop();
    }
  });

  it("keeps an operator's higher value", async () => {
    const server = await startRedisServer(["--hash-max-listpack-value", "2048"]);
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 2000 });
    try {
      const watch = await store.keepServerSettings();
      await watch.stop();
      assert.equal(await setting(server), 2048);
    } finally {
      await store.dispose();
      await server.stop();
    }
  });

  it("starts where CONFIG is refused; records are then hash tables", async () => {
    const server = await startRedisServer(["--rename-command", "CONFIG", ""]);
    const store = new RedisStore({ url: server.url, keyPrefix: PREFIX, limits, commandTimeoutMs: 2000 });
    try {
      const watch = await store.keepServerSettings();
      try {
        assert.equal(await recordEncoding(server, store), "hashtable");
      } finally {
        await watch.stop();
      }
    } finally {
      await store.dispose();
      await server.stop();
    }
  });
});
