/**
 * `npm run reencrypt` on a real Redis Cluster (3 primaries, one cluster for
 * the file): with REDIS_CLUSTER_NODES it scans every primary, so after a key
 * rotation every sealed value of every partition is under the new primary key,
 * and the service reads everything with only that key; a user's sessions
 * stay in one partition across the rotation (the partition secret).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Cluster } from "ioredis";
import { AccessLevel, Code, ConnectError, createSessionClient, type SessionClient } from "@sessiond/client";
import { sealedKeyId } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { reencrypt } from "../src/tools/reencrypt.js";
import { startTestApp } from "./support/server.js";
import { useRedisCluster } from "./support/redis-cluster.js";
import { rawDump } from "./support/raw-dump.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const key = (id: string): string => `${id}:${randomBytes(32).toString("base64")}`;
const K1 = key("k1");
const K2 = key("k2");
const K3 = key("k3");
const cluster = useRedisCluster({ primaries: 3, replicas: 0 });

async function withApp(keys: string, fn: (client: SessionClient) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
  const app = await startTestApp({ env: { REDIS_CLUSTER_NODES: cluster().seeds, ENCRYPTION_KEYS: keys, SWEEP_INTERVAL: "50ms", ...env } });
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

    // Only the new key: everything reads; the listings by data source and by user find the retokened sessions.
    await withApp(K2, async (client) => {
      for (const [i, id] of ids.entries()) {
        assert.deepEqual((await client.getSession({ sessionId: id })).session?.metadata, { i });
        assert.deepEqual((await client.getSessionData({ sessionId: id, key: "v" })).value?.kind, { case: "numberValue", value: i });
        assert.deepEqual((await client.listSessions({ userId: `u-${i}`, pageSize: 10 })).sessions.map((s) => s.sessionId), [id]);
      }
      assert.deepEqual((await client.listSessions({ dataSource: "d", pageSize: 100 })).sessions.map((s) => s.sessionId).sort(), [...ids].sort());
    });
  });

  test("a user's sessions stay in one partition across a rotation: listing by user and MAX_SESSIONS_PER_USER see all of them, no user id on any primary", async () => {
    const users = ["rot-alice@example.com", "rot-bob@example.com", "rot-carol@example.com", "rot-dave@example.com", "rot-erin@example.com"];
    const ids = new Map<string, string[]>(users.map((u) => [u, []]));
    const env = { MAX_SESSIONS_PER_USER: "6" };
    const add = async (client: SessionClient, count: number): Promise<void> => {
      for (const userId of users) {
        for (let i = 0; i < count; i++) ids.get(userId)?.push((await client.createSession({ userId, dataSource: "rot", accessLevel: AccessLevel.READ })).session?.sessionId ?? "");
      }
    };
    // K2 is the primary key after the test above (or the first key of a fresh cluster).
    await withApp(K2, (client) => add(client, 3), env);
    // The new key first, the service restarted, then `npm run reencrypt`, then the old key removed.
    await withApp(`${K3},${K2}`, (client) => add(client, 1), env);
    const redis = new Cluster(cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port })), { scaleReads: "master" });
    try {
      const report = await reencrypt({ redis, keyPrefix: "sd:", keyring: parseKeyring(`${K3},${K2}`), partitions: 16 });
      assert.equal(report.failed, 0);
      assert.equal(report.partitionSecret, "resealed");
    } finally {
      redis.disconnect();
    }
    await withApp(K3, async (client) => {
      await add(client, 2);
      for (const userId of users) {
        const listed = (await client.listSessions({ userId, pageSize: 100 })).sessions.map((s) => s.sessionId);
        assert.deepEqual(new Set(listed), new Set(ids.get(userId)), `${userId}: every session listed`);
        assert.equal(listed.length, 6);
        await assert.rejects(
          client.createSession({ userId, dataSource: "rot", accessLevel: AccessLevel.READ }),
          (e: unknown) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
          "the cap counts the sessions made before the rotation",
        );
      }
    }, env);
    for (const node of await cluster().primaries()) {
      const raw = cluster().client(node);
      try {
        const dump = await rawDump(raw);
        for (const userId of users) assert.ok(!dump.includes(userId.split("@")[0] ?? userId), "no user id on any primary");
      } finally {
        raw.disconnect();
      }
    }
  });
});
