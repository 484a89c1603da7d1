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
import { GetSessionRequestSchema, GetSessionResponseSchema } from "../gen/session/v1/session_pb.js";
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
});
