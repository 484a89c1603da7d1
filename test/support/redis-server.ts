/**
 * Starts a private redis-server on a free port for one test file, so tests
 * never share state with each other or with a Redis the machine already runs,
 * and can stop, restart or reconfigure it to inject faults.
 *
 * redis-server must be on PATH (Debian: `apt-get install redis-server`).
 * A missing binary fails the test run: it is never silently skipped.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { after, before } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis, type RedisOptions } from "ioredis";

export interface RedisServerHandle {
  readonly port: number;
  readonly url: string;
  /** Stops the server; it can be started again on the same port with start(). */
  stop(): Promise<void>;
  /** (Re)starts the server on the same port (data is not kept). */
  start(): Promise<void>;
  /** A fresh ioredis connection to this server, for inspecting raw state. */
  client(): Redis;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return listenOnce(0);
}

/**
 * A free port whose cluster bus port (port + 10000, Redis's default) is free
 * too: a cluster node whose bus port is taken (by any socket of the machine,
 * a client's ephemeral port among them) exits at start.
 */
export async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10_000 > 65_535) continue;
    if ((await listenOnce(port + 10_000).catch(() => 0)) !== 0) return port;
  }
}

/** Binds `port` on 127.0.0.1 (0: any) and lets it go; the port bound. */
function listenOnce(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(port, "127.0.0.1", () => {
      const address = srv.address();
      const bound = typeof address === "object" && address !== null ? address.port : 0;
      srv.close(() => resolve(bound));
    });
  });
}

function assertRedisServerInstalled(): void {
  const probe = spawnSync("redis-server", ["--version"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      "redis-server is not on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, " +
        "macOS: `brew install redis`) and run the tests again.",
    );
  }
}

/** Resolves once the redis-server (or sentinel) on `port` answers PING; rejects when `child` exits or after `timeoutMs`. */
/** Waits until the server on `port` answers PING; `access` adds credentials or TLS options for the probe. */
export async function waitForPing(port: number, child: ChildProcess, timeoutMs = 10_000, access: RedisOptions = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`redis-server on port ${port} exited with code ${child.exitCode}`);
    }
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...access });
    probe.on("error", () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === "PONG") return;
    } catch {
      // not up yet
    } finally {
      probe.disconnect();
    }
    await sleep(25);
  }
  throw new Error(`redis-server on port ${port} did not answer PING within ${timeoutMs} ms`);
}

/**
 * Starts redis-server with persistence off. Extra arguments are passed as
 * redis-server command-line options, e.g. ["--notify-keyspace-events", "Ex"].
 */
export async function startRedisServer(extraArgs: readonly string[] = []): Promise<RedisServerHandle> {
  assertRedisServerInstalled();
  const port = await freePort();
  let child: ChildProcess | undefined;

  const start = async (): Promise<void> => {
    if (child !== undefined && child.exitCode === null && child.signalCode === null) return;
    const proc = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning", ...extraArgs],
      { stdio: "ignore" },
    );
    child = proc;
    await waitForPing(port, proc);
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGKILL");
    await exited;
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    client: () => {
      const c = new Redis({ port, host: "127.0.0.1" });
      c.on("error", () => {}); // the tests stop the server on purpose; commands still reject
      return c;
    },
  };
}

/** A private redis-server for the tests of one file or `describe` block, with one shared raw connection. */
export interface RedisFixture extends RedisServerHandle {
  /** A raw ioredis connection for inspecting or changing state (opened on first use, closed after the tests). */
  readonly raw: Redis;
}

/**
 * Registers `before`/`after` hooks in the calling file or `describe` block
 * that start a private redis-server and stop it (and the raw connection)
 * afterwards. Read the fixture's members inside tests and hooks only: the
 * server exists once `before` has run.
 */
export function useRedisServer(extraArgs: readonly string[] = []): RedisFixture {
  let handle: RedisServerHandle | undefined;
  let raw: Redis | undefined;
  const started = (): RedisServerHandle => {
    if (handle === undefined) throw new Error("useRedisServer: the redis-server is started in before(); use it inside tests");
    return handle;
  };
  before(async () => {
    handle = await startRedisServer(extraArgs);
  });
  after(async () => {
    raw?.disconnect();
    await handle?.stop();
  });
  return {
    get port() {
      return started().port;
    },
    get url() {
      return started().url;
    },
    stop: () => started().stop(),
    start: () => started().start(),
    client: () => started().client(),
    get raw() {
      raw ??= started().client();
      return raw;
    },
  };
}
