/**
 * A second, independent gRPC implementation (@grpc/grpc-js with the .proto
 * loaded at run time by @grpc/proto-loader) against the real server over h2c:
 * proves the wire protocol, not just connect-es talking to itself.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { App } from "../src/app.js";
import { startTestApp } from "./support/server.js";

/** The fields these tests read, as proto-loader decodes them (longs and enums as strings). */
interface WireSession {
  sessionId: string;
  userId: string;
  accessLevel: string;
  status: string;
  version: string;
  expireTime: { seconds: string; nanos: number } | null;
  metadata: { fields: Record<string, { stringValue?: string }> } | null;
}
interface SessionReply {
  session: WireSession;
}

function loadService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync("session/v1/session.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const service = ((loaded["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["SessionService"];
  assert.equal(typeof service, "function", "proto-loader found session.v1.SessionService");
  return service as grpc.ServiceClientConstructor;
}

const Service = loadService();

/** Calls one unary method by its proto name, e.g. "CreateSession". */
function call<T>(client: grpc.Client, method: string, request: object, options: grpc.CallOptions = {}): Promise<T> {
  const definition = Service.service[method];
  assert.ok(definition !== undefined, `method ${method} exists`);
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<object, T>(
      definition.path,
      definition.requestSerialize,
      definition.responseDeserialize,
      request,
      new grpc.Metadata(),
      options,
      (error, response) => (error !== null ? reject(error) : resolve(response as T)),
    );
  });
}

function isStatus(code: grpc.status): (error: unknown) => boolean {
  return (error: unknown) => {
    assert.ok(typeof error === "object" && error !== null && "code" in error, `expected a gRPC status error, got ${String(error)}`);
    assert.equal((error as grpc.ServiceError).code, code, `expected ${grpc.status[code]}, got ${String(error)}`);
    return true;
  };
}

describe("@grpc/grpc-js client over h2c", () => {
  let app: App;
  let client: grpc.Client;
  before(async () => {
    app = await startTestApp();
    client = new Service(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await app.close();
  });

  test("create, get, extend, close", async () => {
    const created = await call<SessionReply & { created: boolean }>(client, "CreateSession", {
      userId: "dave",
      dataSource: "warehouse",
      accessLevel: "ACCESS_LEVEL_READ",
      ttl: { seconds: 120 },
      metadata: { fields: { region: { stringValue: "eu" } } },
    });
    assert.equal(created.created, true);
    const id = created.session.sessionId;
    assert.equal(created.session.status, "SESSION_STATUS_ACTIVE");
    assert.equal(created.session.accessLevel, "ACCESS_LEVEL_READ");
    assert.equal(created.session.version, "1");
    assert.equal(created.session.metadata?.fields["region"]?.stringValue, "eu");

    const got = await call<SessionReply>(client, "GetSession", { sessionId: id });
    assert.equal(got.session.userId, "dave");

    const extended = await call<SessionReply>(client, "ExtendSession", { sessionId: id, ttl: { seconds: 3600 } });
    assert.equal(extended.session.version, "2");
    assert.ok(Number(extended.session.expireTime?.seconds) > Number(created.session.expireTime?.seconds) + 3000);

    const closed = await call<SessionReply>(client, "CloseSession", { sessionId: id });
    assert.equal(closed.session.status, "SESSION_STATUS_CLOSED");
    await assert.rejects(call(client, "GetSession", { sessionId: id }), isStatus(grpc.status.NOT_FOUND));
  });

  test("INVALID_ARGUMENT and NOT_FOUND come through as gRPC status codes", async () => {
    await assert.rejects(call(client, "GetSession", { sessionId: "not-a-uuid" }), isStatus(grpc.status.INVALID_ARGUMENT));
    await assert.rejects(call(client, "CreateSession", { userId: "", dataSource: "x" }), isStatus(grpc.status.INVALID_ARGUMENT));
    await assert.rejects(call(client, "GetSession", { sessionId: crypto.randomUUID() }), isStatus(grpc.status.NOT_FOUND));
  });

  test("calls with a tiny deadline fail with DEADLINE_EXCEEDED at worst, and the server keeps serving", async () => {
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, () => call(client, "ListSessions", {}, { deadline: Date.now() + 1 })),
    );
    for (const outcome of outcomes) {
      if (outcome.status === "rejected") isStatus(grpc.status.DEADLINE_EXCEEDED)(outcome.reason);
    }
    const metrics = await call<{ totalSessions: string }>(client, "GetSessionMetrics", {});
    assert.ok(Number(metrics.totalSessions) >= 1);
  });
});
