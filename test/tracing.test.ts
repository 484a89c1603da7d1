/**
 * OpenTelemetry tracing, with the SDK's in-memory exporter in this process
 * (the provider is global: one per test process, as in the service):
 * one server span per RPC continuing the caller's W3C traceparent, a client
 * span per Redis script as its child, the trace and span ids on the RPC log
 * line and the request and trace ids on the audit record; a stream's store
 * reads are children of its span too.
 *
 * And the process: with OTEL_EXPORTER_OTLP_ENDPOINT set, `npm start`'s
 * command exports spans over OTLP/HTTP (protobuf) to that endpoint (a local
 * HTTP server standing in for a collector); without it, nothing is sent and
 * the startup line says tracing is off.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-node";
import type { DestinationStream } from "pino";
import type { App } from "../src/app.js";
import { createSessionClient } from "@sessiond/client";
import { startTracing, type Tracing } from "../src/observability/tracing.js";
import { startRedisServer, type RedisServerHandle } from "./support/redis-server.js";
import { captureLogs, startTestApp, type LogCapture } from "./support/server.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID = "00f067aa0ba902b7";
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_SPAN_ID}-01`;

let redis: RedisServerHandle;
const exporter = new InMemorySpanExporter();
let tracing: Tracing | undefined;
let app: App;
let logs: LogCapture;
const audit: string[] = [];

before(async () => {
  redis = await startRedisServer();
  tracing = startTracing({ exporter, serviceVersion: "test" });
  logs = captureLogs("debug");
  const auditDestination: DestinationStream = { write: (line: string) => void audit.push(line) };
  app = await startTestApp({ redisUrl: redis.url, logger: logs.logger, auditDestination, env: { AUDIT_LOG: "stdout" } });
});

after(async () => {
  await app?.close();
  await tracing?.shutdown();
  await redis?.stop();
});

function spansOf(traceId: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
}

async function waitFor(what: string, predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("spans", () => {
  it("a call with a traceparent: a server span under the caller's, a Redis script span under it, ids on the log line and audit record", async () => {
    const client = createSessionClient(app.url, {
      interceptors: [
        (next) => (req) => {
          req.header.set("traceparent", TRACEPARENT);
          req.header.set("x-request-id", "req-trace-1");
          return next(req);
        },
      ],
    });
    const created = await client.createSession({ userId: "u", dataSource: "d" });
    await waitFor("the spans", () => spansOf(TRACE_ID).length >= 2);

    const spans = spansOf(TRACE_ID);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    assert.ok(server, "a server span in the caller's trace");
    assert.equal(server.name, "session.v1.SessionService/CreateSession");
    assert.equal(server.parentSpanContext?.spanId, PARENT_SPAN_ID, "child of the caller's span");
    assert.equal(server.attributes["rpc.system"], "grpc");
    assert.equal(server.attributes["rpc.method"], "CreateSession");
    assert.equal(server.attributes["rpc.grpc.status_code"], 0);
    assert.equal(server.resource.attributes["service.name"], "sessiond");

    const script = spans.find((s) => s.kind === SpanKind.CLIENT && s.name === "FCALL create");
    assert.ok(script, `a Redis script span; got ${spans.map((s) => s.name).join(", ")}`);
    assert.equal(script.parentSpanContext?.spanId, server.spanContext().spanId, "child of the RPC's span");
    assert.equal(script.attributes["db.system.name"], "redis");
    assert.equal(script.attributes["server.port"], redis.port);
    for (const span of spans) {
      assert.doesNotMatch(JSON.stringify(span.attributes), /"u"|"d"/, "no request values in attributes");
    }

    const line = logs.lines().find((l) => l["method"] === "session.v1.SessionService/CreateSession" && l["requestId"] === "req-trace-1");
    assert.equal(line?.["traceId"], TRACE_ID);
    assert.equal(line?.["spanId"], server.spanContext().spanId);

    const record = audit.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r["operation"] === "create" && r["sessionId"] === created.session?.sessionId);
    assert.equal(record?.["requestId"], "req-trace-1");
    assert.equal(record?.["traceId"], TRACE_ID);
  });

  it("a call without one starts its own trace; a script that answered not-found is not a failed span", async () => {
    exporter.reset();
    const client = createSessionClient(app.url);
    await assert.rejects(client.getSession({ sessionId: "00000000-0000-4000-8000-000000000000" }));
    await waitFor("the spans", () => exporter.getFinishedSpans().some((s) => s.kind === SpanKind.SERVER));
    const server = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.SERVER);
    assert.ok(server);
    assert.equal(server.parentSpanContext, undefined, "a root span");
    assert.equal(server.attributes["rpc.grpc.status_code"], 5);
    const script = exporter.getFinishedSpans().find((s) => s.name === "FCALL get");
    assert.equal(script?.status.code, 0, "UNSET: Redis ran the script; the RPC's NOT_FOUND is on the server span's status code");
    assert.equal(script?.parentSpanContext?.spanId, server.spanContext().spanId);
  });

  it("background store work (the expiry scheduler, the event reader) makes no root spans", async () => {
    exporter.reset();
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), []);
  });
});

/** A stand-in OTLP/HTTP collector: records the path and content type of each export. */
async function startCollector(): Promise<{ url: string; requests: { path: string; type: string; bytes: number }[]; close(): void }> {
  const requests: { path: string; type: string; bytes: number }[] = [];
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on("data", (chunk: Buffer) => (bytes += chunk.length));
    req.on("end", () => {
      requests.push({ path: req.url ?? "", type: req.headers["content-type"] ?? "", bytes });
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests, close: () => server.close() };
}

/** Runs src/main.ts, makes one RPC once it listens, then stops it with SIGTERM; resolves with its stdout. */
function runOnce(env: Record<string, string>): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      env: { ...process.env, REDIS_URL: "", HOST: "127.0.0.1", PORT: "0", LOG_FORMAT: "json", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let called = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const address = /"address":"(http:\/\/[^"]+)"/.exec(stdout)?.[1];
      if (address === undefined || called) return;
      called = true;
      void createSessionClient(address)
        .createSession({ userId: "u", dataSource: "d" })
        .finally(() => child.kill("SIGTERM"));
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout });
    });
  });
}

describe("export", () => {
  it("with OTEL_EXPORTER_OTLP_ENDPOINT: spans go to <endpoint>/v1/traces as OTLP protobuf (flushed at shutdown)", async () => {
    const collector = await startCollector();
    try {
      const run = await runOnce({ OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_SERVICE_NAME: "sessiond-test" });
      assert.equal(run.code, 0);
      assert.match(run.stdout, /"tracing":true/);
      assert.ok(collector.requests.length >= 1, "an export arrived");
      assert.equal(collector.requests[0]?.path, "/v1/traces");
      assert.equal(collector.requests[0]?.type, "application/x-protobuf");
      assert.ok((collector.requests[0]?.bytes ?? 0) > 0);
    } finally {
      collector.close();
    }
  });

  it("without it: nothing is exported, tracing off", async () => {
    const collector = await startCollector();
    try {
      // The collector listens, but nothing names it: no request may arrive.
      const run = await runOnce({ OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "" });
      assert.equal(run.code, 0);
      assert.match(run.stdout, /"tracing":false/);
      assert.equal(collector.requests.length, 0);
    } finally {
      collector.close();
    }
  });
});
