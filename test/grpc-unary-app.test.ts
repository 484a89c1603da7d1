/**
 * The real app's gRPC unary calls from @grpc/grpc-js (the fast path,
 * src/server/grpc-unary): authentication, scopes and audit records apply to
 * them as to every other protocol, and a large response is gzip-compressed
 * for a client that accepts it (read on the wire with a raw HTTP/2 client).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { GetSessionRequestSchema, GetSessionResponseSchema, SetSessionDataRequestSchema } from "../gen/session/v1/session_pb.js";
import { metricValue } from "./support/attack.js";
import type { App } from "../src/app.js";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { startTestApp } from "./support/server.js";

const writer: TestKey = { id: "writer", key: "writer-key-0123456789abcdef0123456789", tenant: "acme", scopes: ["read", "write"] };
const reader: TestKey = { id: "reader", key: "reader-key-0123456789abcdef0123456789", tenant: "acme", scopes: ["read"] };

function loadService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync("session/v1/session.proto", {
    includeDirs: [fileURLToPath(new URL("../proto", import.meta.url))],
    longs: String,
    enums: String,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  return ((loaded["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["SessionService"] as grpc.ServiceClientConstructor;
}
const Service = loadService();

function auditRecords(file: string): Record<string, unknown>[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function call(client: grpc.Client, method: string, request: object, key: string | undefined): Promise<{ error: grpc.ServiceError | null; response: unknown }> {
  const definition = Service.service[method];
  assert.ok(definition !== undefined);
  const metadata = new grpc.Metadata();
  if (key !== undefined) metadata.set("authorization", `Bearer ${key}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request, metadata, (error, response) => resolve({ error, response }));
  });
}

describe("the app's unary gRPC calls from grpc-js", () => {
  let app: App;
  let client: grpc.Client;
  let auditFile: string;
  before(async () => {
    const dir = tempDir();
    auditFile = join(dir, "audit.log");
    app = await startTestApp({ env: { AUDIT_LOG: auditFile, API_KEYS_FILE: writeApiKeysFile(dir, [writer, reader]) } });
    client = new Service(`127.0.0.1:${app.port}`, grpc.credentials.createInsecure());
  });
  after(async () => {
    client.close();
    await app.close();
  });

  test("no credential: UNAUTHENTICATED; a read-only key cannot create: PERMISSION_DENIED; both audited, nothing created", async () => {
    const request = { userId: "alice", dataSource: "warehouse" };
    const none = await call(client, "CreateSession", request, undefined);
    assert.equal(none.error?.code, grpc.status.UNAUTHENTICATED);
    const denied = await call(client, "CreateSession", request, reader.key);
    assert.equal(denied.error?.code, grpc.status.PERMISSION_DENIED);
    const listed = await call(client, "ListSessions", { userId: "alice" }, reader.key);
    assert.equal(listed.error, null);
    assert.deepEqual((listed.response as { sessions: unknown[] }).sessions, []);
    const records = auditRecords(auditFile);
    const grpcPeer = /^127\.0\.0\.1:\d+$/;
    const unauthenticated = records.find((r) => r["operation"] === "authenticate" && r["method"] === "session.v1.SessionService/CreateSession");
    assert.equal(unauthenticated?.["outcome"], "unauthenticated");
    assert.match(String(unauthenticated?.["peer"]), grpcPeer, "the caller's address reaches the audit record on this path");
    const refused = records.find((r) => r["operation"] === "authorize" && r["principal"] === "key:reader");
    assert.equal(refused?.["outcome"], "permission_denied");
    assert.equal(records.filter((r) => r["operation"] === "create").length, 0, "nothing created");
  });

  test("a created session is audited with its principal, and a large GetSession answer is gzip-compressed on the wire", async () => {
    const metadata = { blob: "m".repeat(4000) };
    const created = await call(client, "CreateSession", { userId: "bob", dataSource: "warehouse", metadata: { fields: { blob: { stringValue: metadata.blob } } } }, writer.key);
    assert.equal(created.error, null);
    const sessionId = (created.response as { session: { sessionId: string } }).session.sessionId;
    const createdRecord = auditRecords(auditFile).find((r) => r["operation"] === "create");
    assert.deepEqual(
      { principal: createdRecord?.["principal"], tenant: createdRecord?.["tenant"], sessionId: createdRecord?.["sessionId"], outcome: createdRecord?.["outcome"] },
      { principal: "key:writer", tenant: "acme", sessionId, outcome: "ok" },
    );

    const session = http2.connect(`http://127.0.0.1:${app.port}`);
    try {
      const message = toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId }));
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      const answer = await new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": "/session.v1.SessionService/GetSession",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-accept-encoding": "gzip",
          authorization: `Bearer ${reader.key}`,
        });
        let headers: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        stream.on("response", (h) => (headers = h));
        stream.on("trailers", (t) => (trailers = t));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => resolve({ headers, trailers, body: Buffer.concat(chunks) }));
        stream.on("error", reject);
        stream.end(frame);
      });
      assert.equal(answer.trailers["grpc-status"], "0");
      assert.equal(answer.headers["grpc-encoding"], "gzip");
      assert.equal(answer.body[0], 1, "the message is flagged compressed");
      const length = answer.body.readUInt32BE(1);
      assert.ok(length < 1000, `compressed to ${length} bytes`);
      const response = fromBinary(GetSessionResponseSchema, gunzipSync(answer.body.subarray(5, 5 + length)));
      assert.equal(response.session?.sessionId, sessionId);
      assert.deepEqual(response.session?.metadata, metadata);
    } finally {
      session.close();
    }
    // The same call through grpc-js, which accepts gzip by default, reads it transparently.
    const got = await call(client, "GetSession", { sessionId }, reader.key);
    assert.equal(got.error, null);
    // The generated Connect client (connect's gRPC transport, the fast path too) agrees.
    const viaConnect = await clientWith(app.url, `Bearer ${reader.key}`).getSession({ sessionId });
    assert.equal(viaConnect.session?.sessionId, sessionId);
  });

  test("the fast path refuses an unauthenticated call from its headers, its body never sent; bad bytes get our INVALID_ARGUMENT, counted", async () => {
    // Unary gRPC with the binary codec over HTTP/2: the fast path (grpc-unary/unary-handler.ts) claims these streams.
    const path = "/session.v1.SessionService/GetSession";
    const refusedBefore = await metricValue(app.url, 'sessiond_rejected_total{kind="request",reason="unauthenticated"}').catch(() => 0);
    const session = http2.connect(`http://127.0.0.1:${app.port}`);
    try {
      // Headers only: the stream stays open and no DATA is ever sent (a frame header announcing 900 KB at most).
      for (const prefix of [undefined, Buffer.from([0, 0, 0x0d, 0xbb, 0xa0])]) {
        const refusal = await new Promise<{ headers: http2.IncomingHttpHeaders; ended: boolean }>((resolve, reject) => {
          const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" }, { endStream: false });
          stream.on("response", (headers, flags) => resolve({ headers, ended: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 }));
          stream.on("error", reject);
          if (prefix !== undefined) stream.write(prefix);
        });
        assert.equal(refusal.headers["grpc-status"], String(grpc.status.UNAUTHENTICATED));
        assert.equal(refusal.headers["grpc-message"], "unauthenticated");
        assert.equal(refusal.ended, true, "trailers-only: the status is in the one HEADERS frame");
      }
    } finally {
      session.destroy();
    }
    const refusedAfter = await metricValue(app.url, 'sessiond_rejected_total{kind="request",reason="unauthenticated"}');
    assert.ok(refusedAfter >= refusedBefore + 2, "each refusal is counted");
    const audited = auditRecords(auditFile).filter((r) => r["operation"] === "authenticate" && r["method"] === "session.v1.SessionService/GetSession");
    assert.ok(audited.length >= 2, "and audited");

    const malformedBefore = await metricValue(app.url, 'sessiond_rejected_total{kind="request",reason="malformed_body"}').catch(() => 0);
    const raw = async (rpc: string, message: Uint8Array): Promise<{ status: string; message: string }> => {
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      const s = http2.connect(`http://127.0.0.1:${app.port}`);
      try {
        return await new Promise((resolve, reject) => {
          const stream = s.request({
            ":method": "POST",
            ":path": `/session.v1.SessionService/${rpc}`,
            "content-type": "application/grpc",
            te: "trailers",
            authorization: `Bearer ${writer.key}`,
          });
          let result = { status: "", message: "" };
          const take = (h: http2.IncomingHttpHeaders): void => {
            if (h["grpc-status"] !== undefined) result = { status: String(h["grpc-status"]), message: decodeURIComponent(String(h["grpc-message"] ?? "")) };
          };
          stream.on("response", take);
          stream.on("trailers", take);
          stream.on("data", () => {});
          stream.on("end", () => resolve(result));
          stream.on("error", reject);
          stream.end(frame);
        });
      } finally {
        s.close();
      }
    };
    const garbage = await raw("GetSession", Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    assert.deepEqual(garbage, { status: String(grpc.status.INVALID_ARGUMENT), message: "request: the body is not a valid protobuf encoding of session.v1.GetSessionRequest" });
    const badUtf8 = await raw("GetSession", Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0x41]));
    assert.deepEqual(badUtf8, { status: String(grpc.status.INVALID_ARGUMENT), message: "request: a string field of session.v1.GetSessionRequest is not valid UTF-8" });
    let value: Value = create(ValueSchema, { kind: { case: "stringValue", value: "leaf" } });
    for (let i = 0; i < 150; i++) value = create(ValueSchema, { kind: { case: "listValue", value: { values: [value] } } });
    const deep = await raw("SetSessionData", toBinary(SetSessionDataRequestSchema, create(SetSessionDataRequestSchema, { sessionId: "s", key: "k", value })));
    assert.deepEqual(deep, { status: String(grpc.status.INVALID_ARGUMENT), message: "request: session.v1.SetSessionDataRequest nests messages deeper than 100 levels" });
    const malformedAfter = await metricValue(app.url, 'sessiond_rejected_total{kind="request",reason="malformed_body"}');
    assert.ok(malformedAfter >= malformedBefore + 3, "malformed bodies on the fast path are counted as the body checks count them");
  });
});
