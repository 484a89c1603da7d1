/**
 * Through Sentinel with ACL users, a database other than 0 and TLS (issue 14),
 * on real setups started from the redis-server binary
 * (test/support/redis-sentinel.ts): the default users there have no password,
 * so a client that sent the passwords without the user names would be refused.
 *
 * - REDIS_USERNAME / REDIS_PASSWORD_FILE, REDIS_SENTINEL_USERNAME /
 *   REDIS_SENTINEL_PASSWORD_FILE and REDIS_DB: the service starts and serves
 *   calls; its sessions are in that database, its connections are the ACL
 *   users', and a session there expires from that database's due queue.
 * - REDIS_SENTINEL_TLS with REDIS_SENTINEL_TLS_CA_FILE: the same over TLS to
 *   the sentinels and the servers (TLS-only ports), and the event reader on it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { AccessLevel, createSessionClient } from "@sessiond/client";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { EventHub } from "../src/streaming/event-hub.js";
import { useRedisSentinel } from "./support/redis-sentinel.js";
import { startTestApp, TEST_ENCRYPTION_KEYS } from "./support/server.js";

const LIMITS = { maxDataKeys: 10, archiveRetentionMs: 600_000, expiryGraceMs: 600_000 };
const ACL = { user: "sessiond-app", password: "app-secret", sentinelUser: "sessiond-sentinel", sentinelPassword: "sentinel-secret" };
const DB = 3;

/** The users and databases of the clients connected to a server (CLIENT LIST), excluding the asking one. */
async function clientsOf(redis: import("ioredis").Redis): Promise<{ user: string; db: string }[]> {
  const list = (await redis.call("CLIENT", "LIST")) as string;
  return list
    .split("\n")
    .filter((line) => line.trim() !== "" && !/ cmd=client\|list /.test(line))
    .map((line) => ({ user: /\buser=(\S+)/.exec(line)?.[1] ?? "", db: /\bdb=(\d+)/.exec(line)?.[1] ?? "" }));
}

describe("through Sentinel with ACL users and REDIS_DB", () => {
  const fixture = useRedisSentinel({ replicas: 1, acl: ACL });

  it("the service starts with REDIS_USERNAME, REDIS_SENTINEL_USERNAME and REDIS_DB, and keeps its sessions in that database as that user", { timeout: 120_000 }, async () => {
    const setup = fixture.setup;
    const dir = mkdtempSync(join(tmpdir(), "sessiond-sentinel-acl-"));
    const primary = setup.nodes[0]?.client();
    const sentinel = setup.sentinels[0]?.client();
    assert.ok(primary !== undefined && sentinel !== undefined);
    try {
      writeFileSync(join(dir, "password"), ACL.password);
      writeFileSync(join(dir, "sentinel-password"), ACL.sentinelPassword);
      const app = await startTestApp({
        env: {
          REDIS_SENTINELS: setup.target.sentinels.map((s) => `${s.host}:${s.port}`).join(","),
          REDIS_SENTINEL_MASTER: setup.target.masterName,
          REDIS_USERNAME: ACL.user,
          REDIS_PASSWORD_FILE: join(dir, "password"),
          REDIS_SENTINEL_USERNAME: ACL.sentinelUser,
          REDIS_SENTINEL_PASSWORD_FILE: join(dir, "sentinel-password"),
          REDIS_DB: String(DB),
          REDIS_COMMAND_TIMEOUT: "5s",
          ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
        },
      });
      try {
        const client = createSessionClient(app.url, { timeoutMs: 10_000 });
        const created = await client.createSession({ userId: "acl-user", dataSource: "d", accessLevel: AccessLevel.WRITE });
        const id = created.session?.sessionId ?? "";
        assert.equal((await client.getSession({ sessionId: id })).session?.userId, "acl-user");
        await primary.select(DB);
        assert.ok((await primary.keys(`*${id}*`)).length > 0, `the session's keys are in db ${DB}`);
        await primary.select(0);
        assert.deepEqual(await primary.keys("*"), [], "nothing in db 0");
        const appClients = (await clientsOf(primary)).filter((c) => c.user === ACL.user);
        assert.ok(appClients.length > 0, "the service's connections are the ACL user's");
        assert.ok(
          appClients.every((c) => c.db === String(DB)),
          `every one on db ${DB}: ${JSON.stringify(appClients)}`,
        );
        assert.ok((await clientsOf(sentinel)).some((c) => c.user === ACL.sentinelUser), "the service asks the sentinels as their ACL user");
      } finally {
        await app.close();
      }
    } finally {
      primary.disconnect();
      sentinel.disconnect();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a store on that database expires a session there from its due queue", { timeout: 120_000 }, async () => {
    const store = new RedisStore({ sentinel: { ...fixture.setup.target, db: DB }, keyPrefix: "sdacl:", limits: LIMITS, commandTimeoutMs: 5000 });
    const settings = await store.keepServerSettings();
    try {
      const { session } = await store.create({ tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 300, metadata: "{}", requestId: "" });
      const until = Date.now() + 30_000;
      let expired = false;
      while (!expired && Date.now() < until) {
        expired = (await store.expireDue(10)).some((r) => r.sessionId === session.sessionId);
        if (!expired) await sleep(50);
      }
      assert.ok(expired, "the session in db 3 expired from the due queue");
    } finally {
      await settings.stop();
      await store.dispose();
    }
  });
});

describe("through Sentinel over TLS", () => {
  const fixture = useRedisSentinel({ replicas: 1, tls: true });

  it("the service starts with REDIS_SENTINEL_TLS and REDIS_SENTINEL_TLS_CA_FILE and serves calls", { timeout: 120_000 }, async () => {
    const setup = fixture.setup;
    const dir = mkdtempSync(join(tmpdir(), "sessiond-sentinel-tls-"));
    try {
      writeFileSync(join(dir, "ca.pem"), setup.target.tls?.ca ?? "");
      const app = await startTestApp({
        env: {
          REDIS_SENTINELS: setup.target.sentinels.map((s) => `${s.host}:${s.port}`).join(","),
          REDIS_SENTINEL_MASTER: setup.target.masterName,
          REDIS_SENTINEL_TLS: "true",
          REDIS_SENTINEL_TLS_CA_FILE: join(dir, "ca.pem"),
          REDIS_COMMAND_TIMEOUT: "5s",
          ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
        },
      });
      try {
        const client = createSessionClient(app.url, { timeoutMs: 10_000 });
        const created = await client.createSession({ userId: "over-tls", dataSource: "d", accessLevel: AccessLevel.WRITE });
        assert.equal((await client.getSession({ sessionId: created.session?.sessionId ?? "" })).session?.userId, "over-tls");
      } finally {
        await app.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the event reader follows the log over TLS", { timeout: 120_000 }, async () => {
    const store = new RedisStore({ sentinel: fixture.setup.target, keyPrefix: "sdtls:", limits: LIMITS, commandTimeoutMs: 5000 });
    const hub = new EventHub({ store, blockMs: 200 });
    await hub.start();
    const watcher = hub.subscribe("t", () => true, 1000);
    try {
      const { session } = await store.create({ tenant: "t", userId: "u", dataSource: "d", accessLevel: "write", ttlMs: 60_000, metadata: "{}", requestId: "" });
      const until = Date.now() + 30_000;
      let seen = false;
      while (!seen && Date.now() < until) {
        for (let event = watcher.queue.shift(); event !== undefined; event = watcher.queue.shift()) seen ||= event.session.sessionId === session.sessionId;
        if (!seen) await sleep(50);
      }
      assert.ok(seen, "the create's event reached the watcher");
    } finally {
      watcher.close();
      await hub.stop();
      await store.dispose();
    }
  });
});
