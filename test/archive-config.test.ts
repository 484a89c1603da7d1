/**
 * Archive settings: validation at start, and what a server without an
 * archive database answers to ListEndedSessions.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "../gen/session/v1/session_pb.js";
import type { App } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { tempDir } from "./support/auth.js";
import { startTestApp } from "./support/server.js";

const REDIS = { REDIS_URL: "redis://127.0.0.1:6379" };

test("archive settings default to none; with a URL they take their documented defaults", () => {
  assert.equal(loadConfig({}).archiveDatabase, undefined);
  const config = loadConfig({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://sessiond@db.internal:5432/archive" });
  assert.deepEqual(config.archiveDatabase, {
    url: "postgres://sessiond@db.internal:5432/archive",
    password: undefined,
    retentionMs: 365 * 86_400_000,
    batchSize: 500,
    claimIdleMs: 30_000,
    poolSize: 4,
    timeoutMs: 5000,
  });
});

test("the password comes from ARCHIVE_DATABASE_PASSWORD_FILE without its trailing newline", () => {
  const file = join(tempDir(), "pw");
  writeFileSync(file, "s3cret:/@x\n");
  const config = loadConfig({ ...REDIS, ARCHIVE_DATABASE_URL: "postgresql://sessiond@db/archive", ARCHIVE_DATABASE_PASSWORD_FILE: file });
  assert.equal(config.archiveDatabase?.password, "s3cret:/@x");
});

test("bad archive settings stop the start, naming the variable and never echoing the URL", () => {
  const fails = (env: Record<string, string>, pattern: RegExp): void => {
    assert.throws(() => loadConfig(env), (e: unknown) => e instanceof ConfigError && pattern.test(e.message) && !e.message.includes("hunter2"));
  };
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "mysql://u:hunter2@h/db" }, /^ARCHIVE_DATABASE_URL must be a postgres/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "not a url hunter2" }, /^ARCHIVE_DATABASE_URL must be a postgres/);
  fails({ ARCHIVE_DATABASE_URL: "postgres://u:hunter2@h/db" }, /^ARCHIVE_DATABASE_URL needs REDIS_URL/);
  fails({ ...REDIS, ARCHIVE_DATABASE_PASSWORD_FILE: "/nonexistent" }, /^ARCHIVE_DATABASE_PASSWORD_FILE needs ARCHIVE_DATABASE_URL/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://h/db", ARCHIVE_DATABASE_PASSWORD_FILE: "/nonexistent/pw" }, /^ARCHIVE_DATABASE_PASSWORD_FILE: cannot read/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://h/db", ARCHIVE_DB_RETENTION: "10m" }, /^ARCHIVE_DB_RETENTION=/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://h/db", ARCHIVE_BATCH_SIZE: "0" }, /^ARCHIVE_BATCH_SIZE=/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://h/db", ARCHIVE_CLAIM_IDLE: "soon" }, /^ARCHIVE_CLAIM_IDLE=/);
  fails({ ...REDIS, ARCHIVE_DATABASE_URL: "postgres://h/db", ARCHIVE_DB_POOL_SIZE: "1000" }, /^ARCHIVE_DB_POOL_SIZE=/);
});

let app: App;
before(async () => {
  app = await startTestApp();
});
after(async () => {
  await app?.close();
});

test("without an archive database, ListEndedSessions is UNIMPLEMENTED and GetSession include_ended stays NOT_FOUND", async () => {
  const client = createClient(SessionService, createGrpcTransport({ baseUrl: app.url }));
  await assert.rejects(client.listEndedSessions({ userId: "alice" }), (e) => {
    const err = ConnectError.from(e);
    return err.code === Code.Unimplemented && /ARCHIVE_DATABASE_URL/.test(err.rawMessage);
  });
  await assert.rejects(
    client.getSession({ sessionId: "00000000-0000-4000-8000-000000000000", includeEnded: true }),
    (e) => ConnectError.from(e).code === Code.NotFound,
  );
});
