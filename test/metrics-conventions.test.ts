/**
 * /metrics by convention: the gRPC server metrics as go-grpc-prometheus names
 * them (grpc_server_started_total, grpc_server_handled_total with grpc_code
 * "OK"/"NotFound"..., grpc_server_handling_seconds, message counters) for
 * every protocol served (gRPC through @grpc/grpc-js, gRPC-Web and Connect
 * through connect's clients, Connect JSON through fetch); every method's
 * series present from the start; the in-flight gauge; build info; a client's
 * cancel and a reflection stream grpc-js cancels counted as "Canceled" and
 * logged at debug, never as an error; active sessions per tenant, bounded by
 * METRICS_MAX_TENANTS.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import type { App } from "../src/app.js";
import { Code, ConnectError, SessionService } from "@sessiond/client";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { captureLogs, startTestApp, type LogCapture } from "./support/server.js";

const SESSION = "session.v1.SessionService";

/** The value of one sample in Prometheus text (labels in the order prom-client writes them). */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function handled(type: string, service: string, method: string, code: string): string {
  return `grpc_server_handled_total{grpc_type="${type}",grpc_service="${service}",grpc_method="${method}",grpc_code="${code}"}`;
}

function labels(type: string, service: string, method: string): string {
  return `{grpc_type="${type}",grpc_service="${service}",grpc_method="${method}"}`;
}

async function waitFor(what: string, predicate: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const KEYS: TestKey[] = ["t1", "t2", "t3"].map((tenant) => ({ id: tenant, key: `key-${randomUUID()}`, tenant, scopes: ["read", "write", "watch"] }));

let app: App;
let logs: LogCapture;

async function metrics(): Promise<string> {
  return (await fetch(`${app.url}/metrics`)).text();
}

before(async () => {
  logs = captureLogs("debug");
  const dir = tempDir();
  app = await startTestApp({ logger: logs.logger, env: { API_KEYS_FILE: writeApiKeysFile(dir, KEYS), METRICS_MAX_TENANTS: "3", WATCH_HEARTBEAT: "1h" } });
});

after(async () => {
  await app.close();
});

describe("standard gRPC server metrics", () => {
  it("exist for every routed method and code from the start, at 0", async () => {
    const text = await metrics();
    for (const code of ["OK", "Canceled", "InvalidArgument", "NotFound", "DeadlineExceeded", "Unavailable", "Unauthenticated", "DataLoss"]) {
      assert.equal(sample(text, handled("unary", SESSION, "DeleteSessionData", code)), 0, code);
    }
    assert.equal(sample(text, `grpc_server_started_total${labels("server_stream", SESSION, "WatchSessions")}`), 0);
    assert.equal(sample(text, `grpc_server_started_total${labels("unary", "grpc.health.v1.Health", "Check")}`), 0);
    assert.equal(sample(text, `grpc_server_started_total${labels("bidi_stream", "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo")}`), 0);
    assert.equal(sample(text, `grpc_server_handling_seconds_count${labels("unary", SESSION, "GetSession")}`), 0);
    assert.doesNotMatch(text, /sessiond_rpc_handled_total|code="ok"/, "no names of our own for what the convention names");
  });

  it("count each protocol's calls with grpc-go's code names", async () => {
    const before = await metrics();
    const key = `Bearer ${KEYS[0]?.key}`;
    const missing = randomUUID();
    // gRPC (connect's client), gRPC-Web, Connect binary, Connect JSON over HTTP/1.1: the same series.
    const grpcClient = clientWith(app.url, key);
    const webClient = createClient(SessionService, createGrpcWebTransport({ baseUrl: app.url, httpVersion: "2", interceptors: [authorize(key)] }));
    const connectClient = createClient(SessionService, createConnectTransport({ baseUrl: app.url, httpVersion: "2", useBinaryFormat: true, interceptors: [authorize(key)] }));
    for (const client of [grpcClient, webClient, connectClient]) {
      await client.createSession({ userId: "u", dataSource: "d" });
      await assert.rejects(client.getSession({ sessionId: missing }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
    }
    const json = await fetch(`${app.url}/${SESSION}/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: key },
      body: JSON.stringify({ sessionId: missing }),
    });
    assert.equal(json.status, 404);
    const bad = await fetch(`${app.url}/${SESSION}/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: key },
      body: JSON.stringify({ sessionId: "not-a-uuid" }),
    });
    assert.equal(bad.status, 400);

    const text = await metrics();
    const delta = (series: string): number => (sample(text, series) ?? 0) - (sample(before, series) ?? 0);
    assert.equal(delta(handled("unary", SESSION, "CreateSession", "OK")), 3);
    assert.equal(delta(handled("unary", SESSION, "GetSession", "NotFound")), 4);
    assert.equal(delta(handled("unary", SESSION, "GetSession", "InvalidArgument")), 1);
    assert.equal(delta(`grpc_server_started_total${labels("unary", SESSION, "GetSession")}`), 5);
    assert.equal(delta(`grpc_server_handling_seconds_count${labels("unary", SESSION, "GetSession")}`), 5);
    // go-grpc-prometheus: a unary call receives one message, and sends one when it succeeds.
    assert.equal(delta(`grpc_server_msg_received_total${labels("unary", SESSION, "CreateSession")}`), 3);
    assert.equal(delta(`grpc_server_msg_sent_total${labels("unary", SESSION, "CreateSession")}`), 3);
    assert.equal(delta(`grpc_server_msg_sent_total${labels("unary", SESSION, "GetSession")}`), 0);
    assert.match(text, new RegExp(`^grpc_server_handling_seconds_bucket\\{le="0\\.005",grpc_type="unary",grpc_service="${SESSION.replace(/\./g, "\\.")}",grpc_method="GetSession"\\} \\d+$`, "m"));
  });

  it("hold an open watch in flight, then count the client's cancel as Canceled, logged at debug", async () => {
    const client = clientWith(app.url, `Bearer ${KEYS[0]?.key}`);
    const inFlight = `sessiond_rpcs_in_flight${labels("server_stream", SESSION, "WatchSessions")}`;
    const canceled = handled("server_stream", SESSION, "WatchSessions", "Canceled");
    const before = await metrics();
    const controller = new AbortController();
    const watching = (async () => {
      for await (const _ of client.watchSessions({}, { signal: controller.signal })) {
        // no events: WATCH_HEARTBEAT is an hour
      }
    })().catch(() => undefined);
    await waitFor("the watch in flight", async () => sample(await metrics(), inFlight) === (sample(before, inFlight) ?? 0) + 1);
    const logged = logs.lines().length;
    controller.abort();
    await watching;
    await waitFor("the cancel counted", async () => (sample(await metrics(), canceled) ?? 0) === (sample(before, canceled) ?? 0) + 1);
    assert.equal(sample(await metrics(), inFlight), sample(before, inFlight) ?? 0);
    const line = logs.lines().slice(logged).find((l) => l["method"] === `${SESSION}/WatchSessions`);
    assert.equal(line?.["code"], "canceled");
    assert.equal(line?.["level"], 20, "debug");
  });

  it("count a reflection stream grpc-js cancels (as grpcurl does) as Canceled, with no error logged", async () => {
    const series = handled("bidi_stream", "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", "Canceled");
    const before = sample(await metrics(), series) ?? 0;
    const logged = logs.lines().length;
    const definition = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", { includeDirs: ["proto"], keepCase: true, oneofs: true });
    const loaded = grpc.loadPackageDefinition(definition);
    const ns = ((loaded["grpc"] as grpc.GrpcObject)["reflection"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
    const Client = ns["ServerReflection"] as grpc.ServiceClientConstructor;
    const client = new Client(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
    try {
      const call = (client["ServerReflectionInfo"] as () => grpc.ClientDuplexStream<object, object>).call(client);
      call.on("error", () => {}); // the cancellation itself
      call.write({ list_services: "*" });
      await new Promise((resolve) => call.once("data", resolve));
      call.cancel();
      await waitFor("the cancel counted", async () => (sample(await metrics(), series) ?? 0) === before + 1);
    } finally {
      client.close();
    }
    const lines = logs.lines().slice(logged);
    const line = lines.find((l) => l["method"] === "grpc.reflection.v1.ServerReflection/ServerReflectionInfo");
    assert.equal(line?.["code"], "canceled");
    assert.equal(line?.["level"], 20, "debug");
    assert.equal(lines.filter((l) => (l["level"] as number) >= 50).length, 0, "no error lines");
  });
});

describe("service metrics", () => {
  it("sessiond_build_info names the package version and the Node version", async () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    const text = await metrics();
    assert.match(text, new RegExp(`^sessiond_build_info\\{version="${pkg.version.replace(/\./g, "\\.")}",revision="[^"]+",nodejs_version="${process.version.replace(/\./g, "\\.")}"\\} 1$`, "m"));
  });

  it("active sessions per tenant: the default tenant and the most recently active up to METRICS_MAX_TENANTS", async () => {
    const evicted = "sessiond_active_sessions_tenants_evicted_total";
    const evictedBefore = sample(await metrics(), evicted) ?? 0;
    // t1 made calls above; t2 and t3 now: with room for 3 (default included), t1 makes way.
    for (const [i, key] of KEYS.entries()) {
      const client = clientWith(app.url, `Bearer ${key.key}`);
      for (let n = 0; n <= i; n++) await client.createSession({ userId: `u${n}`, dataSource: "d" });
    }
    const text = await metrics();
    const series = text.split("\n").filter((l) => l.startsWith("sessiond_active_sessions{"));
    assert.deepEqual(series.map((l) => /tenant="([^"]+)"/.exec(l)?.[1]).sort(), ["default", "t2", "t3"]);
    assert.equal(sample(text, 'sessiond_active_sessions{tenant="t3"}'), 3);
    assert.equal(sample(text, 'sessiond_active_sessions{tenant="t2"}'), 2);
    assert.equal(sample(text, evicted), evictedBefore + 1);
  });
});

function authorize(value: string): import("@connectrpc/connect").Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", value);
    return next(req);
  };
}
