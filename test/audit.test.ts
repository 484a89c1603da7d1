/**
 * The audit log: one record per session operation (RPCs, expiry, watch start
 * and end, authentication and authorization failures) with principal, tenant,
 * operation, session id, outcome and peer; never values or tokens; on its own
 * destination (a file here, as AUDIT_LOG=<path> configures).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { App } from "../src/app.js";
import { AccessLevel, Code, ConnectError, EventType } from "@sessiond/client";
import { captureLogs, startTestApp, waitForWatchers } from "./support/server.js";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";

const SECRET = `value-${randomUUID()}`;
const writer: TestKey = { id: "writer", key: `key-${randomUUID()}`, tenant: "acme", scopes: ["read", "write", "watch"] };
const reader: TestKey = { id: "reader", key: `key-${randomUUID()}`, tenant: "acme", scopes: ["read"] };

type Rec = Readonly<Record<string, unknown>>;

describe("audit log", () => {
  let app: App;
  let file: string;
  let serviceLogs: ReturnType<typeof captureLogs>;
  const records = (): Rec[] =>
    readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Rec);

  before(async () => {
    const dir = tempDir();
    file = join(dir, "audit", "audit.log");
    serviceLogs = captureLogs("trace");
    app = await startTestApp({
      logger: serviceLogs.logger,
      env: { AUDIT_LOG: file, API_KEYS_FILE: writeApiKeysFile(dir, [writer, reader]), SWEEP_INTERVAL: "50ms" },
    });
  });
  after(() => app.close());

  test("one record per operation, with who, what, which session, outcome and peer; no values or tokens", async () => {
    const c = clientWith(app.url, `Bearer ${writer.key}`);
    const value = { kind: { case: "stringValue" as const, value: SECRET } };
    const id = (await c.createSession({ userId: "u", dataSource: "d", accessLevel: AccessLevel.WRITE, metadata: { s: SECRET } })).session?.sessionId ?? "";
    const controller = new AbortController();
    const watchersBefore = app.events.subscriberCount;
    const watching = (async () => {
      try {
        for await (const res of c.watchSessions({ sessionIds: [id] }, { signal: controller.signal, timeoutMs: 30_000 })) {
          if (res.event?.type === EventType.CLOSED) controller.abort();
        }
      } catch {
        // aborted
      }
    })();
    await waitForWatchers(app, watchersBefore + 1);
    await c.getSession({ sessionId: id });
    await c.updateSession({ sessionId: id, metadata: { s: SECRET } });
    await c.extendSession({ sessionId: id, ttl: durationFromMs(600_000) });
    await c.setSessionData({ sessionId: id, key: "k", value });
    await c.getSessionData({ sessionId: id, key: "k" });
    await c.listSessionData({ sessionId: id, includeValues: true });
    await c.deleteSessionData({ sessionId: id, key: "k" });
    await c.clearSessionData({ sessionId: id });
    await c.listSessions({});
    await c.getSessionMetrics({});
    await assert.rejects(c.getSession({ sessionId: randomUUID() }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound);
    await c.closeSession({ sessionId: id });
    await watching;
    // An expiry, by the sweeper.
    const short = (await c.createSession({ userId: "u", dataSource: "d", ttl: durationFromMs(1000) })).session?.sessionId ?? "";
    // Failures of authentication and authorization.
    await assert.rejects(clientWith(app.url, "Bearer wrong-token").getSession({ sessionId: id }));
    await assert.rejects(clientWith(app.url, `Bearer ${reader.key}`).closeSession({ sessionId: id }));
    await sleep(1500);

    const all = records();
    const ops = all.map((r) => r["operation"]);
    for (const op of ["create", "get", "update", "extend", "data_set", "data_get", "data_list", "data_delete", "data_clear", "list", "metrics", "close", "watch_start", "watch_end", "expire", "authenticate", "authorize"]) {
      assert.ok(ops.includes(op), `a record of ${op}`);
    }
    const forSession = all.filter((r) => r["sessionId"] === id && r["principal"] === "key:writer");
    assert.deepEqual(
      forSession.map((r) => r["operation"]),
      ["create", "watch_start", "get", "update", "extend", "data_set", "data_get", "data_list", "data_delete", "data_clear", "close", "watch_end"].filter((op) => op !== "watch_start" && op !== "watch_end"),
      "the session's own operations, in order",
    );
    for (const r of forSession) {
      assert.equal(r["tenant"], "acme");
      assert.equal(r["outcome"], "ok");
      assert.match(String(r["peer"]), /^127\.0\.0\.1:\d+$/);
      assert.match(String(r["time"]), /^\d{4}-\d\d-\d\dT/);
      assert.equal(r["method"] !== undefined, true);
    }
    const watchRecords = all.filter((r) => r["operation"] === "watch_start" || r["operation"] === "watch_end");
    assert.deepEqual(watchRecords.map((r) => [r["operation"], r["principal"], r["outcome"]]), [["watch_start", "key:writer", "ok"], ["watch_end", "key:writer", "canceled"]], "the client ended the watch");
    const notFound = all.find((r) => r["operation"] === "get" && r["outcome"] === "not_found");
    assert.ok(notFound, "a failed operation is recorded with its outcome");
    const expired = all.find((r) => r["operation"] === "expire");
    assert.deepEqual([expired?.["sessionId"], expired?.["principal"], expired?.["tenant"], expired?.["outcome"]], [short, "system", "acme", "ok"]);
    const authn = all.find((r) => r["operation"] === "authenticate");
    assert.deepEqual([authn?.["principal"], authn?.["outcome"], authn?.["tenant"]], ["unknown", "unauthenticated", undefined]);
    assert.match(String(authn?.["peer"]), /^127\.0\.0\.1:\d+$/);
    const authz = all.find((r) => r["operation"] === "authorize");
    assert.deepEqual([authz?.["principal"], authz?.["tenant"], authz?.["outcome"], authz?.["method"]], ["key:reader", "acme", "permission_denied", "session.v1.SessionService/CloseSession"]);

    const text = readFileSync(file, "utf8");
    for (const forbidden of [SECRET, writer.key, reader.key, "wrong-token", "Bearer"]) {
      assert.ok(!text.includes(forbidden), `the audit log never holds ${forbidden === SECRET ? "values" : "tokens"}`);
    }
    assert.ok(!serviceLogs.text().includes('"audit":true'), "audit records do not go to the service log");
    assert.ok(!serviceLogs.text().includes(SECRET) && !serviceLogs.text().includes(writer.key));
  });

  test("a watch ended by its deadline is audited as deadline_exceeded, one the client cancels as canceled", async () => {
    const c = clientWith(app.url, `Bearer ${writer.key}`);
    const before = records().length;
    await assert.rejects(
      (async () => {
        for await (const _ of c.watchSessions({}, { timeoutMs: 800 })) {
          // heartbeats only
        }
      })(),
      (e: unknown) => e instanceof ConnectError && e.code === Code.DeadlineExceeded,
    );
    const deadline = Date.now() + 5000;
    let ends: Rec[] = [];
    while (Date.now() < deadline) {
      ends = records().slice(before).filter((r) => r["operation"] === "watch_end" || r["operation"] === "watch_start");
      if (ends.length > 0) break;
      await sleep(50);
    }
    assert.ok(ends.length > 0, "the watch was audited");
    assert.equal(ends.at(-1)?.["outcome"], "deadline_exceeded");
  });
});
