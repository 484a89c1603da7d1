/**
 * Logging: one JSON line per RPC with method, code, durationMs and the session
 * id, and never a metadata or data value, whatever the RPC.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fromJson } from "@bufbuild/protobuf";
import { durationFromMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import type { App } from "../src/app.js";
import { AccessLevel, Code, ConnectError, createSessionClient, SessionService, type SessionClient } from "@sessiond/client";
import { loadConfig } from "../src/config/config.js";
import { startRpcServer } from "../src/server/rpc-server.js";
import { captureLogs, startTestApp, type LogCapture, type LogLine } from "./support/server.js";

const SERVICE = "session.v1.SessionService";

function rpcLines(logs: LogCapture): LogLine[] {
  return logs.lines().filter((line) => line["msg"] === "rpc");
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("RPC logging", () => {
  let logs: LogCapture;
  let app: App;
  let client: SessionClient;
  before(async () => {
    logs = captureLogs("debug");
    app = await startTestApp({ logger: logs.logger });
    client = createSessionClient(app.url);
  });
  after(async () => {
    await app.close();
  });

  test("secrets in metadata and data values never reach the log; each RPC logs exactly one line", async () => {
    const secret = `s3cret-${crypto.randomUUID()}`;
    const start = rpcLines(logs).length;

    const created = await client.createSession({
      userId: "erin",
      dataSource: "warehouse",
      accessLevel: AccessLevel.WRITE,
      ttl: durationFromMs(60_000),
      metadata: { token: secret, nested: { deep: [secret] } },
    });
    const id = created.session?.sessionId ?? "";
    await client.updateSession({ sessionId: id, metadata: { token: `${secret}-2` } });
    await client.getSession({ sessionId: id });
    await client.setSessionData({ sessionId: id, key: "credentials", value: fromJson(ValueSchema, { password: secret }) });
    const read = await client.getSessionData({ sessionId: id, key: "credentials" });
    assert.ok(read.value !== undefined);
    const listing = await client.listSessionData({ sessionId: id, includeValues: true });
    assert.deepEqual(listing.keys, ["credentials"]);
    await client.listSessions({ userId: "erin" });
    await assert.rejects(client.getSessionData({ sessionId: id, key: "absent" }), ConnectError);
    await client.closeSession({ sessionId: id });

    assert.ok(!logs.text().includes(secret), "the secret appears in no log line, at any level");

    const lines = rpcLines(logs).slice(start);
    const expected: [string, string, "info" | "warn"][] = [
      ["CreateSession", "ok", "info"],
      ["UpdateSession", "ok", "info"],
      ["GetSession", "ok", "info"],
      ["SetSessionData", "ok", "info"],
      ["GetSessionData", "ok", "info"],
      ["ListSessionData", "ok", "info"],
      ["ListSessions", "ok", "info"],
      ["GetSessionData", "not_found", "warn"],
      ["CloseSession", "ok", "info"],
    ];
    assert.deepEqual(
      lines.map((line) => [line["method"], line["code"], line["level"]]),
      expected.map(([method, code, level]) => [`${SERVICE}/${method}`, code, level === "info" ? 30 : 40]),
      "one line per RPC, in order",
    );
    for (const line of lines) {
      assert.equal(typeof line["durationMs"], "number");
      assert.ok((line["durationMs"] as number) >= 0);
      const method = String(line["method"]);
      if (method.endsWith("/ListSessions")) {
        assert.equal(line["sessionId"], undefined, "ListSessions is about no one session");
      } else {
        assert.equal(line["sessionId"], id, `${method} names the session (CreateSession from its response)`);
      }
      const keys = Object.keys(line).sort();
      for (const key of keys) {
        assert.ok(
          ["code", "durationMs", "level", "method", "msg", "requestId", "service", "sessionId", "time", "traceId"].includes(key),
          `unexpected field ${key} in an rpc line`,
        );
      }
    }
  });

  test("a stream logs one line when it ends", async () => {
    const start = rpcLines(logs).length;
    const abort = new AbortController();
    const stream = client.watchSessions({ sendInitialSnapshot: true }, { signal: abort.signal, timeoutMs: 0 });
    for await (const message of stream) {
      assert.ok(message.event !== undefined);
      break; // leaving the loop cancels the call
    }
    abort.abort();
    await waitFor(() => rpcLines(logs).length > start, "the WatchSessions line");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const lines = rpcLines(logs).slice(start);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.["method"], `${SERVICE}/WatchSessions`);
    assert.equal(typeof lines[0]?.["durationMs"], "number");
    assert.equal(typeof lines[0]?.["code"], "string");
  });
});

describe("RPC logging of service faults", () => {
  // Short, so that V8 quotes all of it in the JSON.parse error message.
  const secret = `s3cret-${crypto.randomUUID().slice(0, 8)}`;
  const logs = captureLogs("debug");
  let url: string;
  let close: () => Promise<void>;

  /** The message of the error the handler threw, to show it did quote the secret. */
  let thrownMessage = "";

  before(async () => {
    // A handler that fails the way a library might: with a message quoting input.
    const routes = (router: ConnectRouter): void => {
      router.service(SessionService, {
        updateSession: (req) => {
          try {
            JSON.parse(String(req.metadata?.["token"]));
          } catch (error) {
            thrownMessage = error instanceof Error ? error.message : "";
            throw error;
          }
          throw new Error("unreachable");
        },
        closeSession: () => {
          throw new ConnectError("redis is not reachable", Code.Unavailable);
        },
      });
    };
    const server = await startRpcServer({ routes, config: loadConfig({ HOST: "127.0.0.1", PORT: "0" }), logger: logs.logger });
    url = server.url;
    close = () => server.close();
  });
  after(async () => {
    await close();
  });

  test("an unexpected error is logged at error with its class and stack frames, not its message", async () => {
    const client = createSessionClient(url);
    const id = crypto.randomUUID();
    await assert.rejects(client.updateSession({ sessionId: id, metadata: { token: secret } }), ConnectError);
    assert.ok(thrownMessage.includes(secret), "the thrown message quotes the input");
    const [line] = rpcLines(logs).filter((l) => l["method"] === `${SERVICE}/UpdateSession`);
    assert.ok(line !== undefined);
    assert.equal(line["level"], 50);
    assert.equal(line["code"], "unknown");
    assert.equal(line["sessionId"], id);
    const error = line["error"] as Record<string, unknown>;
    assert.equal(error["type"], "SyntaxError");
    assert.match(String(error["stack"]), /at /);
    assert.equal(error["message"], undefined);
    assert.ok(!logs.text().includes(secret), "the input quoted by the error message is not logged");
  });

  test("UNAVAILABLE is logged at error with our own message", async () => {
    const client = createSessionClient(url);
    const id = crypto.randomUUID();
    await assert.rejects(client.closeSession({ sessionId: id }), (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable);
    const [line] = rpcLines(logs).filter((l) => l["method"] === `${SERVICE}/CloseSession`);
    assert.equal(line?.["level"], 50);
    assert.equal(line?.["code"], "unavailable");
    assert.equal(line?.["sessionId"], id);
    assert.deepEqual(line?.["error"], { type: "ConnectError", message: "redis is not reachable" });
  });
});
