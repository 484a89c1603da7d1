/**
 * Expiry and watching across real service processes (`node --import tsx
 * src/main.ts`, what `npm start` runs) on one private redis-server:
 * - three processes: exactly one EXPIRED event and one archive per session;
 * - every process stopped while sessions expire: after a restart they are
 *   archived and announced, and a watcher resuming from its cursor gets them;
 * - CONFIG refused (redis-server started with `--rename-command CONFIG ""`)
 *   and keyspace notifications off: the process starts, and a session created
 *   by a process that then stops is expired on time by another one, woken by
 *   the event log alone (no shadow key, no notification).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createSessionClient, EventType, type SessionClient, type SessionEvent } from "@sessiond/client";
import { startRedisServer, useRedisServer } from "./support/redis-server.js";
import { TEST_ENCRYPTION_KEYS } from "./support/server.js";
import { readArchive } from "./support/archive.js";
import { entryFields } from "./support/event-entries.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Service {
  readonly url: string;
  readonly client: SessionClient;
  readonly child: ChildProcess;
  stop(): Promise<number | null>;
}

/** Starts one service process and waits for its "listening" line. */
function startService(redisUrl: string, env: Record<string, string> = {}): Promise<Service> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: ROOT,
      env: {
        ...process.env,
        HOST: "127.0.0.1",
        PORT: "0",
        REDIS_URL: redisUrl,
        ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
        AUDIT_LOG: "off",
        SESSION_TTL_MIN: "100ms",
        WATCH_HEARTBEAT: "1h",
        LOG_LEVEL: "info",
        // A stopped process stops at once: these tests need every process really down (no readiness delay).
        SHUTDOWN_DELAY: "0s",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const match = /"address":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(out);
      if (match?.[1] !== undefined) {
        child.stdout?.off("data", onData);
        child.stdout?.resume();
        const url = match[1];
        resolve({
          url,
          child,
          client: createSessionClient(url, { timeoutMs: 5000 }),
          stop: async () => {
            if (child.exitCode === null) child.kill("SIGTERM");
            return exited;
          },
        });
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", (chunk: Buffer) => void (out += chunk.toString()));
    void exited.then((code) => reject(new Error(`service exited with ${code} before listening: ${out.slice(-2000)}`)));
  });
}

/** Reads until `count` events of `type` arrived (heartbeats skipped). */
async function collect(client: SessionClient, request: { resumeCursor?: string; eventTypes?: EventType[] }, count: number, signal: AbortSignal): Promise<SessionEvent[]> {
  const got: SessionEvent[] = [];
  for await (const response of client.watchSessions(request, { signal, timeoutMs: 0 })) {
    if (response.event === undefined || response.event.type === EventType.HEARTBEAT) continue;
    got.push(response.event);
    if (got.length >= count) break;
  }
  return got;
}

/** A watch opened with a snapshot: `ready` settles on the HEARTBEAT that ends it. */
interface PinnedWatch {
  /**
   * Resolves once the snapshot's closing HEARTBEAT arrived: the watch is then
   * pinned to a log position, so every event written afterwards (by any
   * process) is delivered to it. Rejects if the watch fails or ends first.
   */
  readonly ready: Promise<void>;
  /** The first `count` events of the requested types after the snapshot. */
  readonly events: Promise<SessionEvent[]>;
}

/**
 * Like collect, but asks for the initial snapshot so the caller can wait for
 * the watch to be in place instead of sleeping and hoping it is. The tests
 * start from an empty Redis, so the snapshot itself is skipped.
 */
function watchFromNow(client: SessionClient, request: { eventTypes: EventType[] }, count: number, signal: AbortSignal): PinnedWatch {
  let markReady = (): void => {};
  let failReady = (_error: unknown): void => {};
  const ready = new Promise<void>((resolve, reject) => {
    markReady = resolve;
    failReady = reject;
  });
  const events = (async () => {
    const got: SessionEvent[] = [];
    for await (const response of client.watchSessions({ ...request, sendInitialSnapshot: true }, { signal, timeoutMs: 0 })) {
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
  // A watch that ends or fails before its snapshot does fails `ready` (a no-op once it resolved).
  events.then(() => failReady(new Error("watch ended before its snapshot")), failReady);
  return { ready, events };
}

/** The promise, or a failure after `ms`; the timer is cleared either way so it holds nothing up. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  const timer = new AbortController();
  try {
    return await Promise.race([promise, sleep(ms, undefined, { signal: timer.signal }).then(() => assert.fail(`timed out: ${what}`))]);
  } finally {
    timer.abort();
  }
}

describe("several service processes on one Redis", () => {
  const redis = useRedisServer();

  it("three processes: exactly one EXPIRED event and one archive per session, seen by watchers on every process", async () => {
    await redis.raw.flushall();
    const services = await Promise.all([startService(redis.url), startService(redis.url), startService(redis.url)]);
    const abort = new AbortController();
    try {
      const N = 30;
      const watchers = services.map((s) => watchFromNow(s.client, { eventTypes: [EventType.EXPIRED] }, N, abort.signal));
      await withTimeout(Promise.all(watchers.map((w) => w.ready)), 10_000, "every process's watch in place");
      const ids = new Set<string>();
      for (let i = 0; i < N; i++) {
        const creator = services[i % 3] as Service;
        const { session } = await creator.client.createSession({ userId: `u${i % 5}`, dataSource: `d${i % 3}`, ttl: durationFromMs(1000), metadata: { i } });
        ids.add(session?.sessionId ?? "");
      }
      const seen = await withTimeout(Promise.all(watchers.map((w) => w.events)), 15_000, "EXPIRED events on every process");
      for (const events of seen) {
        assert.equal(events.length, N);
        assert.deepEqual(new Set(events.map((e) => e.session?.sessionId)), ids, "every process's watcher saw every expiry once");
      }
      // The expiry script writes the log entry, the archive and the counter
      // at once, so they are all in place; this quiet period is for the
      // negative half: a second EXPIRED from another process would land now.
      await sleep(500);
      const log = await redis.raw.xrange("sd:ev", "-", "+");
      const expired = log.map(([, fields]) => entryFields(fields)).filter((f) => f.get("k") === "expired").map((f) => f.get("i"));
      assert.equal(expired.length, N, "one EXPIRED entry per session in the log");
      assert.deepEqual(new Set(expired), ids);
      for (const id of ids) assert.equal((await readArchive(redis.raw, `sd:default:{${id}}:a`))?.s, "expired", "one archive per session");
      assert.equal(await redis.raw.hget("sd:default:m", "expired"), String(N), "counted once each");
    } finally {
      abort.abort();
      await Promise.all(services.map((s) => s.stop()));
    }
  });

  it("sessions expiring while every process is down are archived and announced after a restart; a resumed watcher gets them", async () => {
    await redis.raw.flushall();
    const first = await startService(redis.url);
    const N = 10;
    const ids = new Set<string>();
    let cursor = "";
    try {
      const abort = new AbortController();
      const created = watchFromNow(first.client, { eventTypes: [EventType.CREATED] }, N, abort.signal);
      await withTimeout(created.ready, 10_000, "the watch in place");
      for (let i = 0; i < N; i++) {
        // Long enough that a loaded machine still creates all ten and stops the process before the first is due.
        const { session } = await first.client.createSession({ userId: "down", dataSource: "d", ttl: durationFromMs(5000) });
        ids.add(session?.sessionId ?? "");
      }
      const events = await withTimeout(created.events, 5000, "CREATED events");
      cursor = events.at(-1)?.cursor ?? "";
      abort.abort();
    } finally {
      assert.equal(await first.stop(), 0, "a graceful stop");
    }
    await sleep(5500); // every session comes due with no process running
    assert.equal(await redis.raw.hget("sd:default:m", "expired"), null, "nothing expired them meanwhile");
    const second = await startService(redis.url);
    const abort = new AbortController();
    try {
      const resumed = await withTimeout(collect(second.client, { resumeCursor: cursor }, N, abort.signal), 10_000, "EXPIRED after restart");
      assert.ok(resumed.every((e) => e.type === EventType.EXPIRED));
      assert.deepEqual(new Set(resumed.map((e) => e.session?.sessionId)), ids);
      for (const id of ids) assert.equal((await readArchive(redis.raw, `sd:default:{${id}}:a`))?.s, "expired");
    } finally {
      abort.abort();
      await second.stop();
    }
  });
});

describe("Redis without keyspace notifications", () => {
  it("CONFIG refused and notify-keyspace-events off: it starts, and a session another process created expires on time", async () => {
    const locked = await startRedisServer(["--rename-command", "CONFIG", ""]);
    // An hour between looks at the due queue: only the due wake-up the create appends can wake the scheduler in time.
    const env = { SWEEP_INTERVAL: "1h" };
    const creator = await startService(locked.url, env);
    const expirer = await startService(locked.url, env);
    const abort = new AbortController();
    try {
      const watch = watchFromNow(expirer.client, { eventTypes: [EventType.EXPIRED] }, 1, abort.signal);
      await watch.ready;
      const { session } = await creator.client.createSession({ userId: "u", dataSource: "d", ttl: durationFromMs(5000) });
      // The creator is gone before the session is due: the other process expires it, woken by the create's due wake-up.
      assert.equal(await creator.stop(), 0);
      const [expired] = await watch.events;
      assert.equal(expired?.session?.sessionId, session?.sessionId);
    } finally {
      abort.abort();
      await creator.stop();
      await expirer.stop();
      await locked.stop();
    }
  });

  it("CONFIG allowed: notify-keyspace-events is left as it was", async () => {
    const server = await startRedisServer(["--notify-keyspace-events", "Kl"]);
    const raw = server.client();
    try {
      const service = await startService(server.url);
      const flags = (await raw.config("GET", "notify-keyspace-events")) as string[];
      assert.equal([...(flags[1] ?? "")].sort().join(""), "Kl");
      await service.stop();
    } finally {
      raw.disconnect();
      await server.stop();
    }
  });
});
