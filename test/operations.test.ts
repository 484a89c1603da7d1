/**
 * The operator's side of the port, against the real app on a RedisStore:
 * /healthz, /readyz and /metrics over HTTP/1.1 (fetch) and HTTP/2, the
 * grpc.health.v1 Check a Kubernetes gRPC probe sends (grpc-js over h2c),
 * the correlation ids in the RPC log line, and the Redis connection metrics.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { Redis } from "ioredis";
import type { App } from "../src/app.js";
import { instrumentRedis, observeExpiryLag, trackWatcher } from "../src/observability/metrics.js";
import { captureLogs, startTestApp, type LogCapture } from "./support/server.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";

let redis: RedisServerHandle;
let app: App;
let logs: LogCapture;

before(async () => {
  redis = await startRedisServer();
  logs = captureLogs("info");
  app = await startTestApp({ redisUrl: redis.url, logger: logs.logger, env: { KEY_PREFIX: "ops-test:", REDIS_COMMAND_TIMEOUT: "300ms" } });
});

after(async () => {
  await app.close();
  await redis.stop();
});

/** GET over HTTP/1.1. */
async function get(path: string, init: RequestInit = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(`${app.url}${path}`, init);
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** GET over h2c. */
async function get2(path: string): Promise<{ status: number; body: string }> {
  const session = http2.connect(app.url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":path": path, ":method": "GET" });
      let status = 0;
      let body = "";
      req.on("response", (headers) => (status = Number(headers[":status"])));
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => (body += chunk));
      req.on("end", () => resolve({ status, body }));
      req.on("error", reject);
    });
  } finally {
    session.close();
  }
}

async function createSession(headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}/session.v1.SessionService/CreateSession`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ userId: "ops", dataSource: "metrics", ttl: "60s" }),
  });
}

/** The value of one sample in Prometheus text, e.g. sample(text, 'sessiond_active_sessions{tenant="default"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function waitFor(what: string, predicate: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe("HTTP endpoints", () => {
  it("/healthz answers 200 over HTTP/1.1 and HTTP/2, GET and HEAD, and refuses other methods", async () => {
    const res = await get("/healthz");
    assert.equal(res.status, 200);
    assert.equal(res.body, "ok\n");
    assert.equal(res.headers.get("cache-control"), "no-store");
    assert.deepEqual(await get2("/healthz"), { status: 200, body: "ok\n" });
    const head = await get("/healthz", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.body, "");
    const post = await get("/healthz", { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  });

  it("/readyz is 503 while Redis is unreachable and 200 again once it is back; /healthz stays 200", async () => {
    await waitFor("ready", async () => (await get("/readyz")).status === 200);
    assert.equal((await get("/readyz")).body, "ready\n");
    await redis.stop();
    try {
      await waitFor("not ready", async () => (await get("/readyz")).status === 503);
      assert.equal((await get("/readyz")).body, "not ready: store unreachable\n");
      assert.equal((await get("/healthz")).status, 200, "liveness does not depend on Redis");
    } finally {
      await redis.start();
    }
    await waitFor("ready again", async () => (await get("/readyz")).status === 200);
  });

  it("a Kubernetes-style gRPC probe (grpc-js over h2c, grpc.health.v1 Check) gets SERVING, NOT_FOUND for an unknown service", async () => {
    const definition = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: ["proto"], keepCase: true, enums: String });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
    const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
    const check = (service: string): Promise<{ status: string }> =>
      new Promise((resolve, reject) =>
        (client["Check"] as (r: object, cb: (e: grpc.ServiceError | null, r: { status: string }) => void) => void).call(client, { service }, (e, r) =>
          e === null ? resolve(r) : reject(e),
        ),
      );
    try {
      assert.equal((await check("")).status, "SERVING");
      assert.equal((await check("session.v1.SessionService")).status, "SERVING");
      await assert.rejects(check("no.such.Service"), (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND);
    } finally {
      client.close();
    }
  });
});

describe("/metrics", () => {
  it("serves RPC counts and latency by method and code, active sessions, watchers, expiry lag, Redis and process metrics", async () => {
    const before = await get("/metrics");
    const okSeries = 'grpc_server_handled_total{grpc_type="unary",grpc_service="session.v1.SessionService",grpc_method="CreateSession",grpc_code="OK"}';
    const okBefore = sample(before.body, okSeries) ?? 0;
    const activeBefore = sample(before.body, 'sessiond_active_sessions{tenant="default"}') ?? 0;

    assert.equal((await createSession()).status, 200);
    assert.equal((await createSession()).status, 200);
    const bad = await fetch(`${app.url}/session.v1.SessionService/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sessionId: "00000000-0000-4000-8000-000000000000" }),
    });
    assert.equal(bad.status, 404);
    const stopWatcher = trackWatcher();
    observeExpiryLag(1500);

    const res = await get("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = res.body;
    assert.equal(sample(text, okSeries), okBefore + 2);
    assert.ok((sample(text, 'grpc_server_handled_total{grpc_type="unary",grpc_service="session.v1.SessionService",grpc_method="GetSession",grpc_code="NotFound"}') ?? 0) >= 1);
    assert.ok(
      (sample(text, 'grpc_server_handling_seconds_count{grpc_type="unary",grpc_service="session.v1.SessionService",grpc_method="CreateSession"}') ?? 0) >= 2,
    );
    assert.match(text, /grpc_server_handling_seconds_bucket\{le="0\.005",grpc_type="unary",grpc_service="session\.v1\.SessionService",grpc_method="CreateSession"\}/);
    assert.equal(sample(text, 'sessiond_active_sessions{tenant="default"}'), activeBefore + 2);
    assert.ok((sample(text, "sessiond_active_watchers") ?? 0) >= 1);
    assert.ok((sample(text, "sessiond_expiry_lag_seconds_count") ?? 0) >= 1);
    assert.match(text, /^process_cpu_user_seconds_total /m);
    assert.match(text, /^nodejs_eventloop_lag_seconds /m);
    assert.deepEqual((await get2("/metrics")).status, 200);

    const watchersNow = sample(text, "sessiond_active_watchers") ?? 0;
    stopWatcher();
    stopWatcher(); // idempotent: one decrement
    assert.equal(sample((await get("/metrics")).body, "sessiond_active_watchers"), watchersNow - 1);
  });

  it("counts Redis connection errors and reconnects of an instrumented client", async () => {
    const client = new Redis(redis.url, { retryStrategy: () => 50, maxRetriesPerRequest: 0, lazyConnect: false });
    const detach = instrumentRedis(client, "ops-test");
    try {
      await waitFor("connected", async () => client.status === "ready");
      const errors = 'sessiond_redis_errors_total{connection="ops-test"}';
      const reconnects = 'sessiond_redis_reconnects_total{connection="ops-test"}';
      const first = (await get("/metrics")).body;
      assert.equal(sample(first, errors), 0, "present from the start");
      assert.equal(sample(first, reconnects), 0);
      await redis.stop();
      try {
        await waitFor("errors and reconnects counted", async () => {
          const text = (await get("/metrics")).body;
          return (sample(text, errors) ?? 0) >= 1 && (sample(text, reconnects) ?? 0) >= 1;
        });
      } finally {
        await redis.start();
      }
    } finally {
      detach();
      client.disconnect();
    }
  });

  it("leaves active sessions absent, not stale, while Redis is unreachable", async () => {
    await redis.stop();
    try {
      const text = (await get("/metrics")).body;
      assert.equal(sample(text, 'sessiond_active_sessions{tenant="default"}'), undefined);
      assert.match(text, /^grpc_server_handled_total/m, "the rest is still served");
    } finally {
      await redis.start();
    }
    await waitFor("ready again", async () => (await get("/readyz")).status === 200);
    // Every connection of the store has to be back before the next tests write.
    await waitFor("writes succeed again", async () => (await createSession()).status === 200);
  });
});

describe("correlation ids in the RPC log line", () => {
  const rpcLine = (requestId: string): Record<string, unknown> | undefined =>
    logs.lines().find((line) => line["msg"] === "rpc" && line["requestId"] === requestId);

  it("logs a W3C traceparent's trace id and echoes the caller's x-request-id", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const res = await createSession({ traceparent: `00-${traceId}-00f067aa0ba902b7-01`, "x-request-id": "req-42" });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal(res.headers.get("x-request-id"), "req-42");
    const line = rpcLine("req-42");
    assert.ok(line !== undefined, "an rpc line with the request id");
    assert.equal(line["traceId"], traceId);
    assert.equal(line["method"], "session.v1.SessionService/CreateSession");
  });

  it("generates a request id when there is none (or it is not a sane token), on failures too, and ignores a malformed traceparent", async () => {
    const res = await fetch(`${app.url}/session.v1.SessionService/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json", traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "x-request-id": "bad id\twith spaces" },
      body: JSON.stringify({ sessionId: "00000000-0000-4000-8000-000000000000" }),
    });
    assert.equal(res.status, 404);
    const id = res.headers.get("x-request-id");
    assert.match(id ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const line = rpcLine(id ?? "");
    assert.ok(line !== undefined);
    assert.equal(line["code"], "not_found");
    assert.equal(line["traceId"], undefined, "an all-zero trace id is invalid");
  });
});
