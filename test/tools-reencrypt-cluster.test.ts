/**
 * `npm run reencrypt` on a real Redis Cluster (3 primaries, one cluster for
 * the file): with REDIS_CLUSTER_NODES it scans every primary, so after a key
 * rotation every sealed value of every partition is under the new primary key,
 * and the service reads everything with only that key.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Cluster } from "ioredis";
import { AccessLevel, createSessionClient, type SessionClient } from "@sessiond/client";
import { sealedKeyId } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { reencrypt } from "../src/tools/reencrypt.js";
import { startTestApp } from "./support/server.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const key = (id: string): string => `${id}:${randomBytes(32).toString("base64")}`;
const K1 = key("k1");
const K2 = key("k2");
const cluster = useRedisCluster({ primaries: 3, replicas: 0 });

async function withApp(keys: string, fn: (client: SessionClient) => Promise<void>): Promise<void> {
  const app = await startTestApp({ env: { REDIS_CLUSTER_NODES: cluster().seeds, ENCRYPTION_KEYS: keys, SWEEP_INTERVAL: "50ms" } });
  try {
    await fn(createSessionClient(app.url));
  } finally {
    await app.close();
  }
}

/** Every sealed metadata and data value on every primary. */
async function sealedValues(): Promise<string[]> {
  const out: string[] = [];
  for (const node of await cluster().primaries()) {
    const raw = cluster().client(node);
    try {
      for (const k of await raw.keys("sd:default:{*")) {
        if ((await raw.type(k)) !== "hash") continue;
        for (const [f, v] of Object.entries(await raw.hgetall(k))) if (k.endsWith(":d") || f === "m") out.push(v);
      }
    } finally {
      raw.disconnect();
    }
  }
  return out;
}

describe("npm run reencrypt on a Redis Cluster", () => {
  test("rewrites the values of every partition on every primary under the new primary key", async () => {
    const ids: string[] = [];
    await withApp(K1, async (client) => {
      // 40 users: sessions in every partition, so on every primary.
      for (let i = 0; i < 40; i++) {
        const id = (await client.createSession({ userId: `u-${i}`, dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { i } })).session?.sessionId ?? "";
        await client.setSessionData({ sessionId: id, key: "v", value: { kind: { case: "numberValue", value: i } } });
        ids.push(id);
      }
    });
    const before = await sealedValues();
    assert.equal(before.length, 80);
    assert.ok(before.every((v) => sealedKeyId(v) === "k1"));

    // The command, as documented, with the service's environment.
    const run = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/tools/reencrypt.ts"], {
        cwd: ROOT,
        env: { ...process.env, REDIS_CLUSTER_NODES: cluster().seeds, ENCRYPTION_KEYS: `${K2},${K1}` },
        stdio: ["ignore", "pipe", "inherit"],
      });
      let stdout = "";
      child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout }));
    });
    assert.equal(run.code, 0);
    const report = JSON.parse(run.stdout) as { rewritten: number; failed: number; primaryKeyId: string };
    assert.equal(report.primaryKeyId, "k2");
    assert.equal(report.failed, 0);
    assert.ok(report.rewritten >= 80);
    assert.ok((await sealedValues()).every((v) => sealedKeyId(v) === "k2"));

    // A second run finds nothing left.
    const again = new Cluster(cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port })), { scaleReads: "master" });
    try {
      assert.equal((await reencrypt({ redis: again, keyPrefix: "sd:", keyring: parseKeyring(`${K2},${K1}`), partitions: 16 })).rewritten, 0);
    } finally {
      again.disconnect();
    }

    // Only the new key: everything reads; the listing by data source finds the retokened sessions. (A listing by
    // user looks in the partition of the user's new token: README "Differences from one Redis".)
    await withApp(K2, async (client) => {
      for (const [i, id] of ids.entries()) {
        assert.deepEqual((await client.getSession({ sessionId: id })).session?.metadata, { i });
        assert.deepEqual((await client.getSessionData({ sessionId: id, key: "v" })).value?.kind, { case: "numberValue", value: i });
      }
      assert.deepEqual((await client.listSessions({ dataSource: "d", pageSize: 100 })).sessions.map((s) => s.sessionId).sort(), [...ids].sort());
    });
  });
});
