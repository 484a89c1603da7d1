/**
 * Configuration: documented defaults, a ConfigError naming the variable for
 * every kind of bad value, and how the process behaves on both (npm start).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { ConfigError, loadConfig, SETTINGS } from "../src/config/config.js";
import { createSessionClient } from "@sessiond/client";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("loadConfig", () => {
  test("defaults", () => {
    const config = loadConfig({});
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.port, 8080);
    assert.equal(config.redisUrl, undefined);
    assert.equal(config.keyPrefix, "sd:");
    assert.equal(config.defaultTenant, "default");
    assert.deepEqual(config.ttl, { defaultMs: 3_600_000, minMs: 1_000, maxMs: 86_400_000 });
    assert.equal(config.archiveRetentionMs, 7 * 86_400_000);
    assert.equal(config.expiryGraceMs, 3_600_000);
    assert.equal(config.sweepIntervalMs, 250);
    assert.equal(config.redisCommandTimeoutMs, 2_000);
    assert.equal(config.watchHeartbeatMs, 15_000);
    assert.equal(config.watchRetentionEvents, 100_000);
    assert.equal(config.watchRetentionMs, 3_600_000);
    assert.equal(config.watchQueueLimit, 1_000);
    assert.deepEqual(config.limits, {
      maxRequestBytes: 1_048_576,
      maxMetadataBytes: 16_384,
      maxDataKeyLength: 256,
      maxDataValueBytes: 65_536,
      maxDataKeys: 1_000,
      maxDataBytes: 8_388_608,
      maxSessionsPerUser: 1_000,
      sessionsPerUserPolicy: "reject",
      maxSessionsPerTenant: 1_000_000,
      maxDataSourcesPerTenant: 100_000,
      maxWatchersPerPrincipal: 16,
      defaultPageSize: 100,
      maxPageSize: 1_000,
    });
    assert.equal(config.logLevel, "info");
  });

  test("an empty variable means its default", () => {
    assert.deepEqual(loadConfig({ PORT: "", REDIS_URL: "", LOG_LEVEL: "" }), loadConfig({}));
  });

  test("values are read", () => {
    const config = loadConfig({
      PORT: "0",
      REDIS_URL: "redis://127.0.0.1:6390/2",
      SESSION_TTL_DEFAULT: "90s",
      SWEEP_INTERVAL: "1s",
      MAX_DATA_KEYS: "5",
      LOG_LEVEL: "debug",
    });
    assert.equal(config.port, 0);
    assert.equal(config.redisUrl, "redis://127.0.0.1:6390/2");
    assert.equal(config.ttl.defaultMs, 90_000);
    assert.equal(config.sweepIntervalMs, 1_000);
    assert.equal(config.limits.maxDataKeys, 5);
    assert.equal(config.logLevel, "debug");
  });

  const invalid: [string, Record<string, string>][] = [
    ["PORT", { PORT: "abc" }],
    ["PORT", { PORT: "70000" }],
    ["PORT", { PORT: "-1" }],
    ["MAX_DATA_KEYS", { MAX_DATA_KEYS: "0" }],
    ["MAX_REQUEST_BYTES", { MAX_REQUEST_BYTES: "1.5" }],
    ["SESSION_TTL_DEFAULT", { SESSION_TTL_DEFAULT: "forever" }],
    ["SWEEP_INTERVAL", { SWEEP_INTERVAL: "1ms" }],
    ["ARCHIVE_RETENTION", { ARCHIVE_RETENTION: "10ms" }],
    ["REDIS_COMMAND_TIMEOUT", { REDIS_COMMAND_TIMEOUT: "2 seconds" }],
    ["REDIS_URL", { REDIS_URL: "http://127.0.0.1:6379" }],
    ["DEFAULT_TENANT", { DEFAULT_TENANT: "acme corp" }],
    ["LOG_LEVEL", { LOG_LEVEL: "loud" }],
    ["SESSION_TTL_MIN", { SESSION_TTL_MIN: "2h" }],
    ["DEFAULT_PAGE_SIZE", { DEFAULT_PAGE_SIZE: "5000" }],
  ];
  for (const [variable, env] of invalid) {
    test(`${JSON.stringify(env)} is a ConfigError naming ${variable}`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => error instanceof ConfigError && error.message.includes(variable),
      );
    });
  }

  test("every setting has a description and a default that loads", () => {
    const env: Record<string, string> = {};
    for (const setting of SETTINGS) {
      assert.notEqual(setting.description, "", setting.env);
      env[setting.env] = setting.default;
    }
    assert.deepEqual(loadConfig(env), loadConfig({}));
  });
});

interface Exit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `node --import tsx src/main.ts` (what npm start runs) with the given environment. */
function runMain(env: Record<string, string>, onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL: "", HOST: "127.0.0.1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      onStdout?.(stdout, child);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("the sessiond process", () => {
  test("an invalid setting exits with code 2 and a message naming it, without a stack trace", async () => {
    const exit = await runMain({ PORT: "abc" });
    assert.equal(exit.code, 2);
    assert.match(exit.stderr, /PORT="abc"/);
    assert.doesNotMatch(exit.stderr, /\n\s+at /, "no stack trace");
    assert.equal(exit.stdout, "");
  });

  test("starts on a free port, serves, prints one startup line, and exits 0 on SIGTERM", async () => {
    let address: string | undefined;
    let served: Promise<bigint> | undefined;
    const exit = await runMain({ PORT: "0", LOG_LEVEL: "info" }, (stdout, child) => {
      if (address !== undefined) return;
      const line = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => typeof l["address"] === "string");
      if (line === undefined) return;
      address = String(line["address"]);
      assert.equal(line["store"], "memory");
      // With server reflection, grpcurl needs no .proto files.
      assert.match(String(line["try"]), /^grpcurl -plaintext 127\.0\.0\.1:\d+ list$/);
      served = createSessionClient(address)
        .getSessionMetrics({})
        .then((metrics) => metrics.totalSessions)
        .finally(() => child.kill("SIGTERM"));
    });
    assert.ok(address !== undefined, `a startup line with the address; stdout: ${exit.stdout} stderr: ${exit.stderr}`);
    assert.match(address, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(await served, 0n, "the started process answered an RPC");
    assert.equal(exit.code, 0, `exit code; stderr: ${exit.stderr}`);
    const messages = exit.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => (JSON.parse(l) as Record<string, unknown>)["msg"]);
    assert.equal(messages.filter((m) => typeof m === "string" && m.startsWith("sessiond listening on")).length, 1);
    assert.ok(messages.includes("stopped"), "it logs that it stopped");
  });

  test("--help lists every setting and exits 0", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", "--help"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0);
    for (const setting of SETTINGS) assert.ok(stdout.includes(setting.env), `--help names ${setting.env}`);
  });
});
