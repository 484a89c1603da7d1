/**
 * grpc.health.v1.Health over real gRPC (h2c) against a RedisStore on a private
 * redis-server, which the test stops and restarts to flip the status.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { pino } from "pino";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus, type HealthCheckResponse } from "../gen/grpc/health/v1/health_pb.js";
import { HealthMonitor } from "../src/health/health-monitor.js";
import { healthServiceRoutes } from "../src/health/health-service.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";

const SESSION_SERVICE = "session.v1.SessionService";
/** How long a status change may take to show: several ping intervals plus the store's reconnect delay. */
const CHANGE_BOUND_MS = 10_000;

let redis: RedisServerHandle;
let store: RedisStore;
let monitor: HealthMonitor;
let served: Served;
let client: Client<typeof Health>;

interface Served {
  readonly client: Client<typeof Health>;
  close(): Promise<void>;
}

/** Serves Health for the monitor on an h2c server on a free port, with a gRPC client for it. */
async function serve(m: HealthMonitor): Promise<Served> {
  const server = http2.createServer(connectNodeAdapter({ routes: healthServiceRoutes(m) }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  return {
    client: createClient(Health, createGrpcTransport({ baseUrl, sessionManager })),
    close: async () => {
      sessionManager.abort();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

before(async () => {
  redis = await startRedisServer();
  store = new RedisStore({
    url: redis.url,
    keyPrefix: "health-test:",
    limits: { maxDataKeys: 100, archiveRetentionMs: 60_000, expiryGraceMs: 60_000 },
    commandTimeoutMs: 500,
    logger: pino({ level: "silent" }),
  });
  monitor = new HealthMonitor({ store, intervalMs: 100, timeoutMs: 500 });
  await monitor.start();
  served = await serve(monitor);
  client = served.client;
});

after(async () => {
  monitor.stop();
  await served.close();
  await store.dispose();
  await redis.stop();
});

/** Polls Check until it reports `want`; fails after CHANGE_BOUND_MS. */
async function waitForCheck(service: string, want: ServingStatus): Promise<void> {
  const deadline = Date.now() + CHANGE_BOUND_MS;
  let last: ServingStatus | undefined;
  while (Date.now() < deadline) {
    last = (await client.check({ service })).status;
    if (last === want) return;
    await sleep(50);
  }
  assert.fail(`Check(${JSON.stringify(service)}) stayed ${ServingStatus[last ?? ServingStatus.UNKNOWN]}, wanted ${ServingStatus[want]}`);
}

/** The next message of a Watch stream, or a failure after `ms`. */
async function nextWithin(stream: AsyncIterator<HealthCheckResponse>, ms: number): Promise<ServingStatus> {
  const timer = AbortSignal.timeout(ms);
  const next = await Promise.race([
    stream.next(),
    new Promise<never>((_, reject) => timer.addEventListener("abort", () => reject(new Error(`no Watch message within ${ms} ms`)))),
  ]);
  assert.equal(next.done, false, "the Watch stream ended");
  return next.value.status;
}

describe("grpc.health.v1.Health", () => {
  it("Check reports SERVING for the server and for SessionService while Redis answers", async () => {
    // The store may still be connecting when the first ping goes out.
    await waitForCheck("", ServingStatus.SERVING);
    assert.equal((await client.check({ service: SESSION_SERVICE })).status, ServingStatus.SERVING);
  });

  it("Check of an unknown service fails with NOT_FOUND", async () => {
    await assert.rejects(client.check({ service: "no.such.Service" }), (e: unknown) => {
      assert.ok(e instanceof ConnectError);
      assert.equal(e.code, Code.NotFound);
      return true;
    });
  });

  it("List reports every known service", async () => {
    const res = await client.list({});
    assert.deepEqual(Object.keys(res.statuses).sort(), ["", SESSION_SERVICE]);
    for (const entry of Object.values(res.statuses)) assert.equal(entry.status, ServingStatus.SERVING);
  });

  it("Watch of an unknown service sends SERVICE_UNKNOWN and keeps the stream open", async () => {
    const abort = new AbortController();
    const stream = client.watch({ service: "no.such.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      assert.equal(await nextWithin(stream, 5_000), ServingStatus.SERVICE_UNKNOWN);
      // Still open: the next read is pending rather than done or failed.
      const pending = stream.next().then(
        () => "ended",
        () => "failed",
      );
      assert.equal(await Promise.race([pending, sleep(300, "open")]), "open");
    } finally {
      abort.abort();
    }
  });

  it("reports NOT_SERVING when Redis stops and SERVING again when it is back, on Check and Watch", async () => {
    const abort = new AbortController();
    const stream = client.watch({ service: "" }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      assert.equal(await nextWithin(stream, 5_000), ServingStatus.SERVING);

      await redis.stop();
      assert.equal(await nextWithin(stream, CHANGE_BOUND_MS), ServingStatus.NOT_SERVING);
      await waitForCheck("", ServingStatus.NOT_SERVING);
      assert.equal((await client.check({ service: SESSION_SERVICE })).status, ServingStatus.NOT_SERVING);

      await redis.start();
      assert.equal(await nextWithin(stream, CHANGE_BOUND_MS), ServingStatus.SERVING);
      await waitForCheck("", ServingStatus.SERVING);
    } finally {
      abort.abort();
    }
  });

  it("Check does not call Redis: it answers from the monitor's cached status", async () => {
    const probe = redis.client();
    try {
      const before = await commandCount(probe);
      await Promise.all(Array.from({ length: 200 }, () => client.check({ service: "" })));
      const after = await commandCount(probe);
      // The monitor pings every 100 ms, so a few PINGs may land meanwhile; 200 Checks would be 200.
      assert.ok(after - before < 50, `Redis saw ${after - before} commands during 200 Checks`);
    } finally {
      probe.disconnect();
    }
  });

  it("stop() sends NOT_SERVING to watchers and ends their streams", async () => {
    const own = new HealthMonitor({ store, intervalMs: 100, timeoutMs: 500 });
    await own.start();
    const ownServed = await serve(own);
    try {
      const stream = ownServed.client.watch({ service: SESSION_SERVICE })[Symbol.asyncIterator]();
      assert.equal(await nextWithin(stream, 5_000), ServingStatus.SERVING);
      own.stop();
      assert.equal(await nextWithin(stream, 5_000), ServingStatus.NOT_SERVING);
      assert.equal((await stream.next()).done, true);
      assert.equal((await ownServed.client.check({ service: "" })).status, ServingStatus.NOT_SERVING);
    } finally {
      own.stop();
      await ownServed.close();
    }
  });
});

/** Commands Redis has processed so far (INFO stats total_commands_processed). */
async function commandCount(probe: ReturnType<RedisServerHandle["client"]>): Promise<number> {
  const info = await probe.info("stats");
  const match = /total_commands_processed:(\d+)/.exec(info);
  assert.ok(match?.[1] !== undefined, "INFO stats has total_commands_processed");
  return Number(match[1]);
}
