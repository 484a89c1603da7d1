/**
 * The Connect protocol as any HTTP client sees it: a plain HTTP/1.1 POST of
 * JSON (what `curl` sends), with Node's own http module and no RPC library.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import type { App } from "../src/app.js";
import { startTestApp } from "./support/server.js";

interface JsonReply {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: Record<string, unknown>;
}

/** POSTs a JSON body to /session.v1.SessionService/<method> over HTTP/1.1. */
function post(app: App, method: string, body: string): Promise<JsonReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${app.url}/session.v1.SessionService/${method}`,
      { method: "POST", headers: { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          try {
            const text = Buffer.concat(chunks).toString("utf8");
            resolve({ status: res.statusCode ?? 0, contentType: res.headers["content-type"], body: JSON.parse(text) as Record<string, unknown> });
          } catch (error) {
            reject(error);
          }
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("Connect protocol with plain HTTP/1.1 JSON", () => {
  let app: App;
  before(async () => {
    app = await startTestApp();
  });
  after(async () => {
    await app.close();
  });

  test("CreateSession then GetSession", async () => {
    const created = await post(app, "CreateSession", '{"userId":"alice","dataSource":"warehouse","accessLevel":"ACCESS_LEVEL_WRITE","ttl":"300s"}');
    assert.equal(created.status, 200);
    assert.equal(created.contentType, "application/json");
    assert.equal(created.body["created"], true);
    const session = created.body["session"] as Record<string, unknown>;
    assert.equal(session["userId"], "alice");
    assert.equal(session["dataSource"], "warehouse");
    assert.equal(session["accessLevel"], "ACCESS_LEVEL_WRITE");
    assert.equal(session["status"], "SESSION_STATUS_ACTIVE");
    assert.equal(session["version"], "1", "uint64 is a JSON string");
    const createMs = Date.parse(String(session["createTime"]));
    const expireMs = Date.parse(String(session["expireTime"]));
    assert.equal(expireMs - createMs, 300_000);

    const id = String(session["sessionId"]);
    const got = await post(app, "GetSession", JSON.stringify({ sessionId: id }));
    assert.equal(got.status, 200);
    assert.equal((got.body["session"] as Record<string, unknown>)["sessionId"], id);
  });

  test("errors are JSON with the code name", async () => {
    const invalid = await post(app, "GetSession", '{"sessionId":"nope"}');
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body["code"], "invalid_argument");
    assert.match(String(invalid.body["message"]), /session_id/);

    const missing = await post(app, "GetSession", JSON.stringify({ sessionId: crypto.randomUUID() }));
    assert.equal(missing.status, 404);
    assert.equal(missing.body["code"], "not_found");

    const badTtl = await post(app, "CreateSession", '{"userId":"alice","dataSource":"warehouse","ttl":"0.001s"}');
    assert.equal(badTtl.body["code"], "invalid_argument");
    assert.match(String(badTtl.body["message"]), /ttl/);

    const malformed = await post(app, "CreateSession", "{not json");
    assert.equal(malformed.body["code"], "invalid_argument");
  });

  test("a request larger than MAX_REQUEST_BYTES is refused, not read", async () => {
    const huge = JSON.stringify({ userId: "alice", dataSource: "warehouse", metadata: { blob: "x".repeat(1_100_000) } });
    const refused = await post(app, "CreateSession", huge);
    assert.equal(refused.body["code"], "resource_exhausted");
  });
});
