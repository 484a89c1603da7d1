/**
 * Watch ergonomics: a WatchSessions stream with nothing to send yet (no
 * snapshot asked, heartbeat an hour away) still shows the client it is open:
 * the response head goes out at once, over gRPC (@grpc/grpc-js's "metadata"
 * event) and over HTTP/1.1 Connect streaming (fetch resolves). The client
 * helper puts no deadline on watches unless asked (and keeps one on unary
 * calls). A client's deadline and cancel are logged and audited as what they
 * are, never as "the server is shutting down".
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { Interceptor } from "@connectrpc/connect";
import type { DestinationStream } from "pino";
import type { App } from "../src/app.js";
import { createClient } from "@connectrpc/connect";
import { createSessionClient, createSessionTransport, EventType, SessionService, watchSessions } from "@sessiond/client";
import { createSessionGrpcClient } from "@sessiond/client/grpc-js";
import { captureLogs, startTestApp, type LogCapture } from "./support/server.js";

const WATCH = "session.v1.SessionService/WatchSessions";

let app: App;
let logs: LogCapture;
let audit: Record<string, unknown>[];
let SessionServiceClient: grpc.ServiceClientConstructor;

before(async () => {
  logs = captureLogs("debug");
  audit = [];
  const auditDestination: DestinationStream = { write: (line: string) => void audit.push(JSON.parse(line) as Record<string, unknown>) };
  app = await startTestApp({ logger: logs.logger, auditDestination, env: { WATCH_HEARTBEAT: "1h" } });
  const definition = protoLoader.loadSync("session/v1/session.proto", { includeDirs: ["proto"], keepCase: true, oneofs: true, longs: String, enums: String });
  const loaded = grpc.loadPackageDefinition(definition);
  SessionServiceClient = ((loaded["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["SessionService"] as grpc.ServiceClientConstructor;
});

after(async () => {
  await app.close();
});

async function waitFor(what: string, predicate: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Opens WatchSessions through @grpc/grpc-js with the given call options. */
function grpcWatch(options: grpc.CallOptions = {}, requestId?: string): { client: grpc.Client; call: grpc.ClientReadableStream<unknown> } {
  const client = new SessionServiceClient(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  const method = client["WatchSessions"] as (request: object, metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;
  const metadata = new grpc.Metadata();
  if (requestId !== undefined) metadata.set("x-request-id", requestId);
  const call = method.call(client, { send_initial_snapshot: false }, metadata, options);
  return { client, call };
}

describe("the response head of a watch", () => {
  it("reaches a gRPC client before any message (grpc-js 'metadata')", async () => {
    const { client, call } = grpcWatch();
    const messages: unknown[] = [];
    call.on("data", (m) => messages.push(m));
    call.on("error", () => {});
    try {
      const metadata = await new Promise<grpc.Metadata>((resolve, reject) => {
        call.once("metadata", resolve);
        call.once("error", reject);
        setTimeout(() => reject(new Error("no response head within 10 s (the heartbeat is an hour away)")), 10_000).unref();
      });
      assert.equal(messages.length, 0, "no message was needed");
      assert.match(String(metadata.get("x-request-id")[0] ?? ""), /^[0-9a-f-]{36}$/, "with the request id");
      assert.match(String(metadata.get("content-type")[0] ?? ""), /^application\/grpc/);
    } finally {
      call.cancel();
      client.close();
    }
  });

  it("reaches an HTTP/1.1 Connect streaming client before any message (fetch resolves)", async () => {
    const body = Buffer.from(JSON.stringify({ sendInitialSnapshot: false }));
    const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), body]);
    envelope.writeUInt32BE(body.length, 1);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 10_000);
    try {
      const res = await fetch(`${app.url}/${WATCH}`, {
        method: "POST",
        headers: { "content-type": "application/connect+json" },
        body: envelope,
        signal: controller.signal,
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("content-type"), "application/connect+json");
      assert.ok(res.headers.get("x-request-id"));
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  });
});

describe("deadlines", () => {
  /** Records the grpc-timeout header each call of the client sends. */
  function recordingTimeouts(): { interceptor: Interceptor; seen: Map<string, string | null> } {
    const seen = new Map<string, string | null>();
    return {
      seen,
      interceptor: (next) => (req) => {
        seen.set(req.method.name, req.header.get("grpc-timeout"));
        return next(req);
      },
    };
  }

  it("the client helper puts none on watches (unless asked) and one on unary calls", async () => {
    const { interceptor, seen } = recordingTimeouts();
    const client = createSessionClient(app.url, { interceptors: [interceptor] });
    await client.getSessionMetrics({});
    const controller = new AbortController();
    const watching = (async () => {
      for await (const _ of client.watchSessions({}, { signal: controller.signal })) {
        // nothing comes
      }
    })().catch(() => undefined);
    await waitFor("the watch sent", () => seen.has("WatchSessions"));
    controller.abort();
    await watching;
    assert.equal(seen.get("GetSessionMetrics"), "5000m", "the default deadline on unary calls");
    assert.equal(seen.get("WatchSessions"), null, "no deadline on the watch");

    const asked = createSessionClient(app.url, { interceptors: [interceptor] });
    await assert.rejects(
      (async () => {
        for await (const _ of asked.watchSessions({}, { timeoutMs: 300 })) {
          // nothing comes
        }
      })(),
    );
    assert.equal(seen.get("WatchSessions"), "300m", "a deadline the caller asks for is kept");
  });

  it("the grpc-js client helper puts none on watches either (and keeps one on unary calls)", async () => {
    const deadlines = new Map<string, grpc.Deadline | undefined>();
    const recorder: grpc.Interceptor = (options, nextCall) => {
      deadlines.set(options.method_definition.path, options.deadline);
      return new grpc.InterceptingCall(nextCall(options));
    };
    const client = createSessionGrpcClient(`127.0.0.1:${app.port}`, { clientOptions: { interceptors: [recorder] } });
    try {
      await client.getSessionMetrics({});
      const controller = new AbortController();
      const watching = (async () => {
        for await (const _ of client.watchSessions({}, { signal: controller.signal })) {
          // nothing comes
        }
      })().catch(() => undefined);
      await waitFor("the watch sent", () => deadlines.has("/session.v1.SessionService/WatchSessions"));
      controller.abort();
      await watching;
    } finally {
      client.close();
    }
    const unaryDeadline = deadlines.get("/session.v1.SessionService/GetSessionMetrics");
    assert.ok(typeof unaryDeadline === "number" && Number.isFinite(unaryDeadline), "a deadline on the unary call");
    assert.equal(deadlines.get("/session.v1.SessionService/WatchSessions"), Number.POSITIVE_INFINITY, "none on the watch");
  });

  it("a watch's deadline is logged and audited as deadline_exceeded, a cancel as canceled", async () => {
    const deadlineWatch = grpcWatch({ deadline: Date.now() + 400 }, "watch-deadline");
    const deadlineEnded = new Promise<grpc.ServiceError>((resolve) => deadlineWatch.call.on("error", resolve));
    assert.equal((await deadlineEnded).code, grpc.status.DEADLINE_EXCEEDED);
    deadlineWatch.client.close();

    const cancelWatch = grpcWatch({}, "watch-cancel");
    cancelWatch.call.on("error", () => {});
    await new Promise((resolve) => cancelWatch.call.once("metadata", resolve));
    cancelWatch.call.cancel();
    cancelWatch.client.close();

    const ours = (l: Record<string, unknown>): boolean => l["requestId"] === "watch-deadline" || l["requestId"] === "watch-cancel";
    await waitFor("two watch log lines", () => logs.lines().filter(ours).length >= 2);
    const line = (id: string) => logs.lines().find((l) => l["requestId"] === id);
    assert.deepEqual([line("watch-deadline")?.["code"], line("watch-deadline")?.["level"]], ["deadline_exceeded", 20]);
    assert.deepEqual([line("watch-cancel")?.["code"], line("watch-cancel")?.["level"]], ["canceled", 20]);
    assert.equal(logs.lines().filter((l) => (l["level"] as number) >= 50).length, 0, "no error lines");

    await waitFor("the audit records", () => audit.filter(ours).length >= 2);
    const outcome = (id: string) => audit.filter((r) => r["requestId"] === id).map((r) => `${String(r["operation"])}:${String(r["outcome"])}`);
    // Neither watch sent a message: the one record is watch_start with how the stream ended.
    assert.deepEqual(outcome("watch-deadline"), ["watch_start:deadline_exceeded"]);
    assert.deepEqual(outcome("watch-cancel"), ["watch_start:canceled"]);
  });
});

describe("leaving a watch loop", () => {
  it("cancels the server stream: the resuming helper's, SessionClient's, and a hand-built client's through its signal", async () => {
    const client = createSessionClient(app.url);
    const readWatch = async (next: () => AsyncIterable<{ readonly type: EventType }>): Promise<void> => {
      await waitFor("no watcher", () => app.events.subscriberCount === 0);
      const loop = (async () => {
        for await (const event of next()) if (event.type === EventType.CREATED) break;
      })();
      await waitFor("the watcher", () => app.events.subscriberCount === 1);
      await client.createSession({ userId: "leaver", dataSource: "d" });
      await loop;
      await waitFor("the server stream ended after the break", () => app.events.subscriberCount === 0);
    };
    const eventsOf = async function* (responses: AsyncIterable<{ readonly event?: { readonly type: EventType } | undefined }>): AsyncGenerator<{ readonly type: EventType }> {
      for await (const response of responses) if (response.event !== undefined) yield response.event;
    };
    await readWatch(() => watchSessions(client, {}));
    await readWatch(() => eventsOf(client.watchSessions({})));
    // connect-es's own client ends only its side on a break: the caller aborts the call.
    const handBuilt = createClient(SessionService, createSessionTransport(app.url));
    const abort = new AbortController();
    await readWatch(async function* () {
      try {
        yield* eventsOf(handBuilt.watchSessions({}, { signal: abort.signal }));
      } finally {
        abort.abort();
      }
    });
  });
});
