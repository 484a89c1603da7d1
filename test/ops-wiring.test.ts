/**
 * The wiring between the store, the server and operations, on a real server
 * and a real redis-server: Redis connection metrics of every store connection,
 * the watchers gauge and the expiry lag histogram fed by the service itself,
 * /metrics behind authentication, readiness that tells the truth after a
 * Redis restart, and bounded abort listeners under concurrent calls.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import type { App } from "../src/app.js";
import { AccessLevel, createSessionClient } from "@sessiond/client";
import { loadConfig } from "../src/config/config.js";
import { HealthMonitor } from "../src/health/health-monitor.js";
import { healthServiceRoutes } from "../src/health/health-service.js";
import { createLogger } from "../src/logging/logger.js";
import { startRpcServer } from "../src/server/rpc-server.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { clientWith, tempDir, writeApiKeysFile } from "./support/auth.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { startTestApp } from "./support/server.js";

const CREATE = { userId: "ops", dataSource: "wiring", accessLevel: AccessLevel.WRITE, ttl: { seconds: 60n } };

/** The value of one sample in Prometheus text. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function metricsOf(app: App, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const res = await fetch(`${app.url}/metrics`, { headers });
  return { status: res.status, body: await res.text() };
}

async function waitFor(what: string, predicate: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe("on Redis", () => {
  let redis: RedisServerHandle;
  let app: App;
  before(async () => {
    redis = await startRedisServer();
    app = await startTestApp({ redisUrl: redis.url, env: { REDIS_COMMAND_TIMEOUT: "500ms" } });
  });
  after(async () => {
    await app?.close();
    await redis?.stop();
  });

  it("counts errors and reconnects of every store connection (command, event reader) on /metrics", async () => {
    const names = ["store", "events"];
    const series = (kind: string, name: string): string => `sessiond_redis_${kind}_total{connection="${name}"}`;
    const before = (await metricsOf(app)).body;
    for (const name of names) {
      assert.notEqual(sample(before, series("errors", name)), undefined, `${name} errors present from the start`);
      assert.notEqual(sample(before, series("reconnects", name)), undefined, `${name} reconnects present from the start`);
    }
    await redis.stop();
    try {
      await waitFor("errors and reconnects of each connection", async () => {
        const text = (await metricsOf(app)).body;
        return names.every(
          (name) =>
            (sample(text, series("errors", name)) ?? 0) > (sample(before, series("errors", name)) ?? 0) &&
            (sample(text, series("reconnects", name)) ?? 0) > (sample(before, series("reconnects", name)) ?? 0),
        );
      });
    } finally {
      await redis.start();
    }
    await waitFor("ready again", async () => (await fetch(`${app.url}/readyz`)).status === 200);
  });

  it("after a Redis restart, the first ready answer is followed by a CreateSession that succeeds without retry", async () => {
    const client = createSessionClient(app.url, { timeoutMs: 5000 });
    // Different outage lengths put the restart at different points of ioredis's reconnect backoff.
    for (const gapMs of [0, 150, 300, 600]) {
      await redis.stop();
      await sleep(gapMs);
      await redis.start();
      await waitFor("ready", async () => (await fetch(`${app.url}/readyz`)).status === 200);
      const { session } = await client.createSession(CREATE);
      assert.ok(session?.sessionId, `create right after ready (outage ${gapMs} ms)`);
    }
  });
});

describe("on the memory store", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: { SESSION_TTL_MIN: "100ms", SWEEP_INTERVAL: "50ms" } });
  });
  after(async () => {
    await app?.close();
  });

  it("counts each open WatchSessions stream on sessiond_active_watchers until it ends", async () => {
    const watchers = async (): Promise<number> => sample((await metricsOf(app)).body, "sessiond_active_watchers") ?? 0;
    const base = await watchers();
    const client = createSessionClient(app.url, { timeoutMs: 60_000 });
    const abort = new AbortController();
    const stream = client.watchSessions({ sendInitialSnapshot: true }, { signal: abort.signal });
    const first = stream[Symbol.asyncIterator]();
    await first.next(); // the heartbeat that ends the (empty) snapshot: the stream is open
    assert.equal(await watchers(), base + 1);
    abort.abort();
    await first.next().catch(() => undefined);
    await waitFor("the watcher released", async () => (await watchers()) === base);
  });

  it("observes the expiry lag of each session this process expires, from expire_time to its archiving", async () => {
    const count = async (): Promise<number> => sample((await metricsOf(app)).body, "sessiond_expiry_lag_seconds_count") ?? 0;
    const base = await count();
    const client = createSessionClient(app.url);
    await client.createSession({ ...CREATE, ttl: { nanos: 200_000_000 } });
    await client.createSession({ ...CREATE, ttl: { nanos: 200_000_000 } });
    await waitFor("two expiries observed", async () => (await count()) === base + 2);
    // On time: the scheduler wakes at the due time, well within a second.
    const body = (await metricsOf(app)).body;
    assert.ok((sample(body, 'sessiond_expiry_lag_seconds_bucket{le="1"}') ?? 0) >= base + 2);
  });

  it("keeps one abort listener on the shared shutdown signal while calls are in flight, none after, with no MaxListenersExceededWarning", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on("warning", onWarning);
    const monitor = new HealthMonitor({ store: new MemoryStore({ limits: { maxDataKeys: 1, archiveRetentionMs: 1000, expiryGraceMs: 1000 } }), intervalMs: 1000 });
    await monitor.start();
    const server = await startRpcServer({
      routes: healthServiceRoutes(monitor),
      config: loadConfig({ HOST: "127.0.0.1", PORT: "0" }),
      logger: createLogger({ level: "silent" }),
    });
    try {
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
      const listeners = (): number => getEventListeners(server.shutdownSignal, "abort").length;
      // 30 calls held open at once (health Watch streams), past Node's default limit of 10 were it one listener each.
      // One controller per stream: a shared one would hold 30 client-side listeners and warn by itself.
      const aborts = Array.from({ length: 30 }, () => new AbortController());
      const streams = aborts.map((abort) => health.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]());
      await Promise.all(streams.map((s) => s.next()));
      assert.equal(listeners(), 1);
      for (const abort of aborts) abort.abort();
      await Promise.all(streams.map((s) => s.next().catch(() => undefined)));
      await waitFor("stream listeners released", async () => listeners() === 0);
      // Many short calls, 50 at a time: nothing accumulates.
      for (let round = 0; round < 20; round++) {
        await Promise.all(Array.from({ length: 50 }, () => health.check({ service: "" })));
      }
      await waitFor("unary listeners released", async () => listeners() === 0);
      await sleep(10); // warnings are emitted on process.nextTick
      assert.deepEqual(warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.stack), []);
    } finally {
      process.off("warning", onWarning);
      monitor.stop();
      await server.close();
    }
  });
});

describe("/metrics behind authentication (AUTH_PROTECT_OPS=true)", () => {
  let app: App;
  const keys = [
    { id: "reader", key: "reader-key-0123456789abcdef0123456789", tenant: "acme", scopes: ["read"] },
    { id: "scraper", key: "scraper-key-0123456789abcdef012345678", tenant: "acme", scopes: ["metrics"] },
    { id: "root", key: "root-key-0123456789abcdef0123456789ab", tenant: "acme", scopes: ["admin"] },
  ];
  before(async () => {
    const dir = tempDir();
    app = await startTestApp({ env: { API_KEYS_FILE: writeApiKeysFile(dir, keys), AUTH_PROTECT_OPS: "true" } });
  });
  after(async () => {
    await app?.close();
  });
  const bearer = (id: string): Record<string, string> => ({ authorization: `Bearer ${keys.find((k) => k.id === id)?.key ?? ""}` });

  it("needs a credential with scope metrics or admin: 401 without one, 403 without the scope", async () => {
    const none = await metricsOf(app);
    assert.equal(none.status, 401);
    assert.doesNotMatch(none.body, /sessiond_/);
    assert.equal((await metricsOf(app, { authorization: "Bearer wrong" })).status, 401);
    assert.equal((await metricsOf(app, bearer("reader"))).status, 403);
    const scraped = await metricsOf(app, bearer("scraper"));
    assert.equal(scraped.status, 200);
    assert.match(scraped.body, /^sessiond_active_watchers /m);
    assert.equal((await metricsOf(app, bearer("root"))).status, 200);
  });

  it("a metrics-only credential cannot call the session API, and probes stay open", async () => {
    await assert.rejects(clientWith(app.url, bearer("scraper")["authorization"]).createSession(CREATE), /permission denied/);
    assert.equal((await fetch(`${app.url}/healthz`)).status, 200);
    assert.equal((await fetch(`${app.url}/readyz`)).status, 200);
  });
});
