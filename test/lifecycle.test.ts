/**
 * Graceful shutdown of a real sessiond process (node --import tsx src/main.ts)
 * on a private redis-server: what SIGTERM and SIGINT do to probes, new calls,
 * calls in flight, watch streams, Redis connections and the exit code, and
 * that SHUTDOWN_TIMEOUT bounds the whole of it.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { EventType, SessionService } from "../gen/session/v1/session_pb.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { startSessiond, type SessiondProcess } from "./support/process.js";

let redis: RedisServerHandle;
const started: SessiondProcess[] = [];

before(async () => {
  redis = await startRedisServer();
});

after(async () => {
  for (const p of started) p.kill();
  await redis.stop();
});

async function start(env: Record<string, string>): Promise<SessiondProcess> {
  // A real encryption key, as production runs with one (the service refuses plaintext on Redis by default).
  const p = await startSessiond({ env: { LOG_LEVEL: "info", ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}`, ...env } });
  started.push(p);
  return p;
}

/** Resolves when a new TCP connection to the URL's port is refused. */
async function refused(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), hostname);
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

describe("startup line", () => {
  it("names the address, the store and the grpcurl command to try", async () => {
    const p = await start({ REDIS_URL: redis.url, KEY_PREFIX: "life-startup:" });
    const host = new URL(p.url).host;
    assert.equal(p.startup["store"], "redis");
    assert.equal(p.startup["try"], `grpcurl -plaintext ${host} list`);
    assert.match(String(p.startup["msg"]), new RegExp(`listening on ${p.url.replace(/[.]/g, "\\.")} \\(store: redis\\); try: grpcurl -plaintext`));
    p.child.kill("SIGTERM");
    assert.equal(await p.exited, 0);
  });
});

describe("SIGTERM", () => {
  it("turns readiness NOT_SERVING, refuses new connections, lets the call in flight finish, ends watch streams with UNAVAILABLE, closes Redis and exits 0", async () => {
    const p = await start({ REDIS_URL: redis.url, KEY_PREFIX: "life-term:", REDIS_COMMAND_TIMEOUT: "5s", SHUTDOWN_TIMEOUT: "10s", SHUTDOWN_DELAY: "0s" });
    const transport = createGrpcTransport({ baseUrl: p.url });
    const health = createClient(Health, transport);
    const sessions = createClient(SessionService, transport);
    const probe = redis.client();
    try {
      const healthStream = health.watch({ service: "" })[Symbol.asyncIterator]();
      assert.equal((await healthStream.next()).value?.status, ServingStatus.SERVING);

      // A watch stream, read in the background until it ends. It asks for the
      // snapshot so the HEARTBEAT ending it tells when the stream is open.
      let watchOpen = (): void => {};
      const opened = new Promise<void>((resolve) => (watchOpen = resolve));
      const watchEnd = (async (): Promise<unknown> => {
        try {
          for await (const response of sessions.watchSessions({ sendInitialSnapshot: true })) {
            if (response.event?.type === EventType.HEARTBEAT) watchOpen();
          }
          return "ended without an error";
        } catch (error) {
          return error;
        }
      })();
      const giveUp = new AbortController();
      const ready = await Promise.race([opened.then(() => "open" as const), watchEnd, sleep(10_000, "timeout" as const, { signal: giveUp.signal })]);
      giveUp.abort();
      assert.equal(ready, "open", "the watch stream is open");

      // Pause Redis writes (PING still answers), so the next CreateSession is held in flight.
      await probe.call("CLIENT", "PAUSE", "2000", "WRITE");
      let inflightSettled = false;
      const inflight = sessions.createSession({ userId: "u-term", dataSource: "ds" }).finally(() => (inflightSettled = true));
      await sleep(300);
      assert.equal(inflightSettled, false, "the call is in flight");

      p.child.kill("SIGTERM");

      const next = await healthStream.next();
      assert.equal(next.value?.status, ServingStatus.NOT_SERVING, "readiness turns NOT_SERVING");
      // New connections are refused while the call is still in flight.
      for (let i = 0; i < 100 && !(await refused(p.url)); i++) await sleep(10);
      assert.equal(await refused(p.url), true, "new connections are refused");
      assert.equal(inflightSettled, false, "still in flight when the listener closed");

      const created = await inflight;
      assert.equal(created.created, true, "the call in flight finished");
      assert.equal(created.session?.userId, "u-term");

      const ended = await watchEnd;
      assert.ok(ended instanceof ConnectError, `the watch stream failed (${String(ended)})`);
      assert.equal(ended.code, Code.Unavailable);

      assert.equal(await p.exited, 0);
      const lines = p.lines();
      assert.ok(lines.some((l) => l["msg"] === "shutting down" && l["signal"] === "SIGTERM"));
      assert.ok(lines.some((l) => l["msg"] === "stopped"));
      // Only the probe is left connected to Redis.
      const clients = String(await probe.call("CLIENT", "LIST")).trim().split("\n");
      assert.equal(clients.length, 1, clients.join("\n"));
    } finally {
      probe.disconnect();
    }
  });
});

describe("SHUTDOWN_DELAY", () => {
  it("after SIGTERM: readiness says 503 and NOT_SERVING at once, the port keeps serving new connections and calls for the delay, then drains and exits 0", async () => {
    const p = await start({ SHUTDOWN_DELAY: "2s", SHUTDOWN_TIMEOUT: "5s" });
    const health = createClient(Health, createGrpcTransport({ baseUrl: p.url }));
    const healthStream = health.watch({ service: "" })[Symbol.asyncIterator]();
    assert.equal((await healthStream.next()).value?.status, ServingStatus.SERVING);
    const signalledAt = Date.now();
    p.child.kill("SIGTERM");
    assert.equal((await healthStream.next()).value?.status, ServingStatus.NOT_SERVING, "health turns NOT_SERVING");
    const ready = await fetch(`${p.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.match(await ready.text(), /shutting down/);
    // A client that had not connected before (a new connection) is still served during the delay.
    const fresh = createClient(SessionService, createGrpcTransport({ baseUrl: p.url }));
    const created = await fresh.createSession({ userId: "u-delay", dataSource: "ds" });
    assert.equal(created.created, true);
    assert.ok(Date.now() - signalledAt < 2000, "that call was served within the delay");
    assert.equal(await p.exited, 0);
    assert.ok(Date.now() - signalledAt >= 2000, "the process stayed for the delay");
    assert.equal(await refused(p.url), true);
  });
});

describe("SHUTDOWN_TIMEOUT", () => {
  it("bounds the shutdown on SIGINT: a request that never completes is cut and the process still exits 0", async () => {
    // The stuck request must still be there when the drain times out: no body-rate or request timeout cuts it first.
    const p = await start({ SHUTDOWN_TIMEOUT: "1s", SHUTDOWN_DELAY: "0s", MIN_REQUEST_BODY_RATE: "0", REQUEST_TIMEOUT: "1h", HEADERS_TIMEOUT: "1h" });
    const { hostname, port } = new URL(p.url);
    const socket = net.connect(Number(port), hostname);
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.on("error", () => {});
    // Headers and a part of the body; the rest never comes.
    socket.write(
      "POST /session.v1.SessionService/CreateSession HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    );
    await sleep(200);
    const signalledAt = Date.now();
    p.child.kill("SIGINT");
    assert.equal(await p.exited, 0);
    // Well within the 10 s the drain would otherwise wait by default.
    assert.ok(Date.now() - signalledAt < 5000, `exited ${Date.now() - signalledAt} ms after SIGINT`);
    assert.ok(p.lines().some((l) => l["msg"] === "drain timeout: closing remaining connections"));
    socket.destroy();
  });
});
