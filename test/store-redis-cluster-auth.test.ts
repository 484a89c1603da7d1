/**
 * AUTH and TLS to every node of a real Redis Cluster (3 primaries with a
 * replica each, requirepass and masterauth on every node, TLS only: client
 * port, cluster bus and replication; one cluster for the file): the store's
 * command connection, its server settings on every primary and the archive's
 * consumer groups all verify the nodes' certificate and authenticate, with
 * the default user or an ACL user; a wrong password, none, or no TLS is
 * refused with UNAVAILABLE, never hangs.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SessionError } from "../src/domain/errors.js";
import { PartitionedEventGroup } from "../src/archive/partitioned-event-group.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import type { RedisClusterTarget } from "../src/store/redis/connections.js";
import { useRedisCluster } from "./support/redis-cluster.js";

const PASSWORD = "cluster-secret-1";
const cluster = useRedisCluster({ primaries: 3, replicas: 1, password: PASSWORD, tls: true });
const PARTITIONS = 16;
const LIMITS = { maxDataKeys: 16, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 };

type Access = { username?: string; password?: string; plaintext?: boolean };

function target({ plaintext, ...auth }: Access): RedisClusterTarget {
  const ca = cluster().ca as string;
  return { nodes: cluster().nodes.map((n) => ({ host: "127.0.0.1", port: n.port })), ...auth, ...(plaintext === true ? {} : { tls: { ca } }) };
}

function openStore(prefix: string, auth: Access): RedisStore {
  return new RedisStore({ url: "", cluster: target(auth), keyPrefix: prefix, partitions: PARTITIONS, limits: LIMITS, commandTimeoutMs: 3000 });
}

/** Creates a session for 40 users (every partition, so every primary), reads them back by listing and counters. */
async function useEveryPrimary(store: RedisStore, tenant: string): Promise<void> {
  for (let i = 0; i < 40; i++) {
    await store.create({ tenant, userId: `u-${i}`, dataSource: "ds", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" });
  }
  const page = await store.list(tenant, {}, 100);
  assert.equal(page.sessions.length, 40);
  assert.equal((await store.counters(tenant)).active, 40);
}

describe("AUTH and TLS on a Redis Cluster", () => {
  it("the store, its server settings and the archive groups reach every node over TLS and authenticate with the password", async () => {
    await cluster().waitReplicasOnline(1);
    const store = openStore("auth1:", { password: PASSWORD });
    const group = new PartitionedEventGroup({ cluster: target({ password: PASSWORD }), partitions: PARTITIONS, keyPrefix: "auth1:", group: "archive", consumer: "c", commandTimeoutMs: 3000 });
    try {
      await store.ping();
      await useEveryPrimary(store, "t1");
      // CONFIG on every primary, over the store's node connections: all need AUTH and TLS.
      const settings = await store.keepServerSettings();
      await settings.stop();
      let primaries = 0;
      for (const node of cluster().nodes) {
        const c = cluster().client(node);
        try {
          const [role] = (await c.call("ROLE")) as [string];
          if (role !== "master") continue;
          primaries += 1;
          const [, value] = (await c.config("GET", "hash-max-listpack-value")) as [string, string];
          assert.equal(value, "512", `hash-max-listpack-value on the primary at port ${node.port}`);
        } finally {
          c.disconnect();
        }
      }
      assert.equal(primaries, 3);
      await group.ensureGroup();
      const read = await group.readNew(100, 10);
      assert.ok(read.length > 0, "the archive group reads the partitions' logs");
    } finally {
      group.close();
      await store.dispose();
    }
  });

  it("an ACL user and its password (REDIS_USERNAME) authenticate too", async () => {
    for (const node of cluster().nodes) {
      const c = cluster().client(node);
      try {
        await c.call("ACL", "SETUSER", "sessiond", "on", ">user-secret-2", "~*", "&*", "+@all");
      } finally {
        c.disconnect();
      }
    }
    const store = openStore("auth2:", { username: "sessiond", password: "user-secret-2" });
    try {
      await useEveryPrimary(store, "t2");
    } finally {
      await store.dispose();
    }
  });

  it("a wrong password, none, or no TLS is refused with UNAVAILABLE", async () => {
    for (const auth of [{ password: "wrong" }, {}, { password: PASSWORD, plaintext: true }]) {
      const store = openStore("auth3:", auth);
      try {
        await assert.rejects(
          store.create({ tenant: "t3", userId: "u", dataSource: "ds", accessLevel: "read", ttlMs: 60_000, metadata: "{}", requestId: "" }),
          (error: unknown) => error instanceof SessionError && error.kind === "unavailable",
        );
      } finally {
        await store.dispose();
      }
    }
  });
});
