/**
 * WORKERS=2: the real process (`node --import tsx src/main.ts`) forks two
 * workers on one port and one private redis-server. Sessions created through
 * both workers expire exactly once each, watchers on both see every expiry
 * once, one /metrics scrape counts every worker's calls and expiries, a
 * worker's event reader follows the log only while it holds a watcher (a
 * watch resumes it), and SIGTERM drains both and exits 0. WORKERS above 1 without Redis is refused.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionClient, EventType, type SessionClient, type SessionEvent } from "@sessiond/client";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { useRedisServer } from "./support/redis-server.js";
import { TEST_ENCRYPTION_KEYS } from "./support/server.js";
import { entryFields } from "./support/event-entries.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Reads EXPIRED events after the snapshot's closing heartbeat; `ready` says the watch is in place. */
function watchExpired(client: SessionClient, count: number, signal: AbortSignal): { ready: Promise<void>; events: Promise<SessionEvent[]> } {
  let markReady = (): void => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const events = (async () => {
    const got: SessionEvent[] = [];
    for await (const response of client.watchSessions({ eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true }, { signal, timeoutMs: 0 })) {
      const event = response.event;
      if (event === undefined || event.type === EventType.SNAPSHOT) continue;
      if (event.type === EventType.HEARTBEAT) {
        markReady();
        continue;
      }
      got.push(event);
      if (got.length >= count) break;
    }
    return got;
  })();
  return { ready, events };
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, undefined, { signal: timer.signal }).then(() => assert.fail(`timed out: ${what}`))]);
  } finally {
    timer.abort();
  }
}

/** The value of one series in Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("WORKERS", () => {
  const redis = useRedisServer();

  it("WORKERS above 1 without REDIS_URL is refused; auto is the core count", () => {
    assert.throws(() => loadConfig({ WORKERS: "2" }), (error: unknown) => error instanceof ConfigError && /WORKERS.*REDIS_URL/.test(error.message));
    assert.equal(loadConfig({}).workers, 1);
    assert.ok(loadConfig({ WORKERS: "auto", REDIS_URL: "redis://127.0.0.1:1" }).workers >= 1);
    assert.throws(() => loadConfig({ WORKERS: "0", REDIS_URL: "redis://127.0.0.1:1" }), ConfigError);
  });

  it("two workers on one port: exactly-once expiry and watch, one scrape sees both workers, SIGTERM drains both", async () => {
    await redis.raw.flushall();
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: ROOT,
      env: {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: "0",
        WORKERS: "2",
        REDIS_URL: redis.url,
        ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
        AUDIT_LOG: "off",
        SESSION_TTL_MIN: "100ms",
        WATCH_HEARTBEAT: "1h",
        EVENT_READER_IDLE: "300ms",
        LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => void (out += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => void (out += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const abort = new AbortController();
    const clients: SessionClient[] = [];
    try {
      const deadline = Date.now() + 60_000;
      while ((out.match(/"msg":"worker listening"/g) ?? []).length < 2) {
        if (Date.now() > deadline || child.exitCode !== null) assert.fail(`two workers did not start: ${out.slice(-2000)}`);
        await sleep(50);
      }
      const url = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out)?.[1];
      assert.ok(url !== undefined, "the workers' address");
      // Two clients, two connections: node:cluster hands connections to the workers in turn.
      clients.push(createSessionClient(url, { timeoutMs: 5000 }), createSessionClient(url, { timeoutMs: 5000 }));
      const N = 20;
      const firstWatches = new AbortController();
      const watchers = clients.map((c) => watchExpired(c, N, firstWatches.signal));
      await within(Promise.all(watchers.map((w) => w.ready)), 15_000, "both watches in place");
      const ids = new Set<string>();
      for (let i = 0; i < N; i++) {
        const { session } = await (clients[i % 2] as SessionClient).createSession({ userId: `u${i % 4}`, dataSource: "d", ttl: durationFromMs(1000) });
        ids.add(session?.sessionId ?? "");
      }
      const seen = await within(Promise.all(watchers.map((w) => w.events)), 20_000, "EXPIRED events on both watches");
      for (const events of seen) assert.deepEqual(new Set(events.map((e) => e.session?.sessionId)), ids, "every expiry seen once by each watcher");
      await sleep(500); // a second EXPIRED from the other worker would land now
      const expired = (await redis.raw.xrange("sd:ev", "-", "+")).filter(([, fields]) => entryFields(fields).get("k") === "expired");
      assert.equal(expired.length, N, "one EXPIRED entry per session");
      assert.equal(await redis.raw.hget("sd:default:m", "expired"), String(N), "counted once each");

      // Every scrape, whichever worker answers it, counts both workers' calls and expiries.
      for (let i = 0; i < 4; i++) {
        const text = await (await fetch(`${url}/metrics`)).text();
        assert.equal(sample(text, 'grpc_server_handled_total{grpc_type="unary",grpc_service="session.v1.SessionService",grpc_method="CreateSession",grpc_code="OK"}'), N);
        assert.equal(sample(text, "sessiond_expiry_lag_seconds_count"), N);
      }
      firstWatches.abort();
      // The watches ended: both readers pause (the expiry schedulers read no event: store.waitDue).
      const following = async (): Promise<number | undefined> => sample(await (await fetch(`${url}/metrics`)).text(), "sessiond_event_reader_following");
      const readers = async (n: number, what: string): Promise<void> => {
        const deadline = Date.now() + 15_000;
        while ((await following()) !== n) {
          if (Date.now() > deadline) assert.fail(`${what}: sessiond_event_reader_following is ${await following()}, not ${n}; watchers ${sample(await (await fetch(`${url}/metrics`)).text(), "sessiond_active_watchers")}`);
          await sleep(100);
        }
      };
      await readers(0, "no reader once the watches ended");
      // A watch on each worker resumes the paused reader, and both watches see what follows.
      const again = clients.map((c) => watchExpired(c, 1, abort.signal));
      await within(Promise.all(again.map((w) => w.ready)), 15_000, "both watches in place again");
      await readers(2, "both readers with a watch each");
      const { session } = await (clients[1] as SessionClient).createSession({ userId: "u0", dataSource: "d", ttl: durationFromMs(300) });
      const late = await within(Promise.all(again.map((w) => w.events)), 20_000, "the new EXPIRED event on both watches");
      for (const events of late) assert.deepEqual(events.map((e) => e.session?.sessionId), [session?.sessionId]);

      const health = await fetch(`${url}/readyz`);
      assert.equal(health.status, 200);
    } finally {
      abort.abort();
      child.kill("SIGTERM");
    }
    assert.equal(await within(exited, 30_000, "exit after SIGTERM"), 0, out.slice(-2000));
    assert.match(out, /"msg":"all workers stopped"/);
  });
});
