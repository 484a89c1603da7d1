/**
 * Configuration: documented defaults, a ConfigError naming the variable for
 * every kind of bad value, and how the process behaves on both (npm start).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { freePort } from "./support/redis-server.js";
import { ConfigError, loadConfig, SETTINGS } from "../src/config/config.js";
import { createSessionClient } from "@sessiond/client";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("loadConfig", () => {
  test("REDIS_CLUSTER_NODES and REDIS_PARTITIONS", () => {
    assert.equal(loadConfig({}).redisPartitions, 1);
    assert.equal(loadConfig({}).redisCluster, undefined);
    const cluster = loadConfig({ REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-b:7001,[::1]:7002" });
    assert.deepEqual(cluster.redisCluster, { nodes: [{ host: "10.0.0.1", port: 7000 }, { host: "redis-b", port: 7001 }, { host: "::1", port: 7002 }] });
    assert.equal(cluster.redisPartitions, 16, "16 partitions by default on a cluster");
    assert.equal(loadConfig({ REDIS_URL: "redis://h:6379", REDIS_PARTITIONS: "4" }).redisPartitions, 4);
    assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_PARTITIONS: "1" }), /REDIS_PARTITIONS must be at least 2/);
    assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_URL: "redis://h:6379" }), /alternatives/);
    assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h" }), /REDIS_CLUSTER_NODES must be host:port/);
    assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h:70000" }), /REDIS_CLUSTER_NODES must be host:port/);
    assert.throws(() => loadConfig({ REDIS_PARTITIONS: "2000" }), /REDIS_PARTITIONS="2000" must be a whole number from 1 to 1024/);
    assert.equal(loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_WAIT_REPLICAS: "1" }).redisWaitReplicas, 1, "WAIT on a cluster");
    const dir = mkdtempSync(join(tmpdir(), "sessiond-config-"));
    try {
      writeFileSync(join(dir, "pw"), "node-secret\n");
      const auth = loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_USERNAME: "sessiond", REDIS_PASSWORD_FILE: join(dir, "pw") });
      assert.deepEqual(auth.redisCluster, { nodes: [{ host: "h", port: 7000 }], username: "sessiond", password: "node-secret" });
      assert.deepEqual(loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_PASSWORD_FILE: join(dir, "pw") }).redisCluster, { nodes: [{ host: "h", port: 7000 }], password: "node-secret" });
      assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_USERNAME: "sessiond" }), /REDIS_USERNAME needs REDIS_PASSWORD_FILE/);
      assert.throws(() => loadConfig({ REDIS_URL: "redis://h:6379", REDIS_USERNAME: "sessiond" }), /REDIS_USERNAME needs REDIS_CLUSTER_NODES/);
      assert.throws(() => loadConfig({ REDIS_URL: "redis://h:6379", REDIS_PASSWORD_FILE: join(dir, "pw") }), /REDIS_PASSWORD_FILE needs REDIS_SENTINELS or REDIS_CLUSTER_NODES/);
      writeFileSync(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n");
      assert.deepEqual(loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_CLUSTER_TLS: "true" }).redisCluster, { nodes: [{ host: "h", port: 7000 }], tls: {} });
      assert.deepEqual(loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_CLUSTER_TLS: "true", REDIS_CLUSTER_TLS_CA_FILE: join(dir, "ca.pem") }).redisCluster?.tls, {
        ca: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----",
      });
      assert.throws(() => loadConfig({ REDIS_CLUSTER_NODES: "h:7000", REDIS_CLUSTER_TLS_CA_FILE: join(dir, "ca.pem") }), /REDIS_CLUSTER_TLS_CA_FILE needs REDIS_CLUSTER_TLS=true/);
      assert.throws(() => loadConfig({ REDIS_URL: "redis://h:6379", REDIS_CLUSTER_TLS: "true" }), /need REDIS_CLUSTER_NODES \(with REDIS_URL, use rediss:\/\/\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

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

  test("edge limits and the shutdown delay: bounded defaults, read values, contradictions refused", () => {
    const config = loadConfig({});
    assert.deepEqual(config.edge, {
      maxConnections: 4096,
      maxConnectionsPerAddress: 512,
      http2MaxConcurrentStreams: 256,
      maxHeaderListBytes: 16_384,
      http2IdleTimeoutMs: 16 * 60_000,
      http2KeepaliveIntervalMs: 30_000,
      http2KeepaliveTimeoutMs: 20_000,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      minRequestBodyRate: 1024,
      maxStreamsPerConnection: 200,
      maxStreams: 10_000,
      rejectAuditRate: 50,
    });
    // connect-node's client closes an idle HTTP/2 connection after 15 min; the server must not close it first
    // (connect-node raises an uncaught "received GOAWAY without any open streams").
    assert.ok(config.edge.http2IdleTimeoutMs > 15 * 60_000);
    assert.equal(config.shutdownDelayMs, 5000);
    assert.equal(loadConfig({ SHUTDOWN_DELAY: "0s" }).shutdownDelayMs, 0);
    assert.equal(loadConfig({ MAX_STREAMS: "20", MAX_STREAMS_PER_CONNECTION: "5" }).edge.maxStreamsPerConnection, 5);
    assert.throws(() => loadConfig({ MAX_CONNECTIONS: "10", MAX_CONNECTIONS_PER_ADDRESS: "20" }), /MAX_CONNECTIONS_PER_ADDRESS \(20\) must not exceed MAX_CONNECTIONS/);
    assert.throws(() => loadConfig({ HEADERS_TIMEOUT: "1m", REQUEST_TIMEOUT: "30s" }), /HEADERS_TIMEOUT/);
    assert.throws(() => loadConfig({ MAX_STREAMS: "10", MAX_STREAMS_PER_CONNECTION: "20" }), /MAX_STREAMS_PER_CONNECTION/);
    assert.throws(() => loadConfig({ HTTP2_MAX_CONCURRENT_STREAMS: "0" }), /HTTP2_MAX_CONCURRENT_STREAMS/);
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

  test("a duration without a unit is an error naming the variable (only 0 needs none)", () => {
    assert.throws(
      () => loadConfig({ WATCH_HEARTBEAT: "15" }),
      (error: unknown) => error instanceof ConfigError && /WATCH_HEARTBEAT="15" needs a unit/.test(error.message),
    );
    assert.equal(loadConfig({ WATCH_HEARTBEAT: "15s" }).watchHeartbeatMs, 15_000);
    assert.equal(loadConfig({ JWT_CLOCK_TOLERANCE: "0", JWT_HS256_SECRET: "x".repeat(32), JWT_ISSUER: "i", JWT_AUDIENCE: "a" }).auth.jwt?.clockToleranceMs, 0);
  });

  test("every problem is reported at once, each naming its variable", () => {
    assert.throws(
      () => loadConfig({ PORT: "abc", WATCH_HEARTBEAT: "15", LOG_LEVEL: "loud", SESSIONS_PER_USER_POLICY: "maybe", ENCRYPTION_KEYS_FILE: "/nonexistent/keys" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 5, error.message);
        for (const variable of ["PORT", "WATCH_HEARTBEAT", "LOG_LEVEL", "SESSIONS_PER_USER_POLICY", "ENCRYPTION_KEYS_FILE"]) {
          assert.equal(error.problems.filter((p) => p.includes(variable)).length, 1, `${variable} in ${error.message}`);
        }
        return true;
      },
    );
  });

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
function runMain(
  env: Record<string, string>,
  onStdout?: (text: string, child: ReturnType<typeof spawn>) => void,
  args: readonly string[] = [],
): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts", ...args], {
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
    // SHUTDOWN_DELAY has its own test (lifecycle.test.ts); here the exit itself is the point.
    const exit = await runMain({ PORT: "0", LOG_LEVEL: "info", SHUTDOWN_DELAY: "0s" }, (stdout, child) => {
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

  test("--version prints the package version and exits 0", async () => {
    const exit = await runMain({}, undefined, ["--version"]);
    assert.equal(exit.code, 0);
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
    assert.match(exit.stdout, new RegExp(`^sessiond ${pkg.version.replace(/\./g, "\\.")} `));
  });

  test("an unknown flag is refused with exit code 2, naming it", async () => {
    const exit = await runMain({ PORT: "0" }, undefined, ["--port=9000"]);
    assert.equal(exit.code, 2);
    assert.match(exit.stderr, /unknown argument "--port=9000"/);
    assert.equal(exit.stdout, "");
  });

  /** Exit 2 and exactly one line on stderr (no stack trace). */
  function assertOneLineStartFailure(exit: Exit, pattern: RegExp): void {
    assert.equal(exit.code, 2, `exit code; stderr: ${exit.stderr}`);
    const lines = exit.stderr.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, 1, exit.stderr);
    assert.match(lines[0] ?? "", pattern);
  }

  test("a port in use: exit 2 with one line naming the address", async () => {
    const busy = net.createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const exit = await runMain({ PORT: String(port) });
      assertOneLineStartFailure(exit, new RegExp(`^sessiond: cannot start: cannot listen on 127\\.0\\.0\\.1:${port} .*in use \\(EADDRINUSE\\)$`));
    } finally {
      busy.close();
    }
  });

  test("an unreadable TLS file: exit 2 with one line naming the setting", async () => {
    const exit = await runMain({ PORT: "0", TLS_CERT_FILE: "/nonexistent/cert.pem", TLS_KEY_FILE: "/nonexistent/key.pem" });
    assertOneLineStartFailure(exit, /^sessiond: cannot start: TLS_CERT_FILE="\/nonexistent\/cert\.pem" cannot be read \(ENOENT\)$/);
  });

  test("Redis unreachable: exit 2 with one line naming the address and the cause, without the password", async () => {
    const port = await freePort();
    const exit = await runMain({ PORT: "0", REDIS_URL: `redis://:hunter2-secret@127.0.0.1:${port}`, ALLOW_PLAINTEXT: "true", LOG_LEVEL: "error" });
    assertOneLineStartFailure(exit, new RegExp(`^sessiond: cannot start: Redis at 127\\.0\\.0\\.1:${port} \\(REDIS_URL\\) is unreachable: ECONNREFUSED$`));
    assert.doesNotMatch(exit.stderr + exit.stdout, /hunter2/);
  });

  test("a normal shutdown with a watch open logs no error: the watch's UNAVAILABLE is logged at info as the shutdown", async () => {
    let opened = false;
    const exit = await runMain({ PORT: "0", LOG_LEVEL: "debug", AUDIT_LOG: "off" }, (stdout, child) => {
      const address = /"address":"(http:\/\/[^"]+)"/.exec(stdout)?.[1];
      if (address === undefined || opened) return;
      opened = true;
      const client = createSessionClient(address);
      void (async () => {
        for await (const _ of client.watchSessions({ sendInitialSnapshot: true })) {
          // the first message means the watch is open: stop the process now
          child.kill("SIGTERM");
        }
      })().catch(() => undefined);
    });
    assert.equal(exit.code, 0, exit.stderr);
    const lines = exit.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines.filter((l) => (l["level"] as number) >= 50).map((l) => l["msg"]), [], "no error lines");
    const watch = lines.find((l) => l["method"] === "session.v1.SessionService/WatchSessions");
    assert.deepEqual([watch?.["code"], watch?.["level"], watch?.["shuttingDown"]], ["unavailable", 30, true]);
  });
});

describe("Redis through Sentinel and REDIS_WAIT_REPLICAS", () => {
  const problems = (env: Record<string, string>): readonly string[] => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems;
    }
  };

  test("sentinels, master name and passwords from files", () => {
    const dir = mkdtempSync(join(tmpdir(), "sessiond-config-"));
    try {
      writeFileSync(join(dir, "redis"), "redis-secret\n");
      writeFileSync(join(dir, "sentinel"), "sentinel-secret");
      const config = loadConfig({
        REDIS_SENTINELS: "s1:26379, 10.0.0.2:26380,[::1]:26381",
        REDIS_SENTINEL_MASTER: "sessions",
        REDIS_PASSWORD_FILE: join(dir, "redis"),
        REDIS_SENTINEL_PASSWORD_FILE: join(dir, "sentinel"),
        REDIS_WAIT_REPLICAS: "1",
        REDIS_WAIT_TIMEOUT: "250ms",
      });
      assert.equal(config.redisUrl, undefined);
      assert.deepEqual(config.redisSentinel, {
        sentinels: [
          { host: "s1", port: 26379 },
          { host: "10.0.0.2", port: 26380 },
          { host: "::1", port: 26381 },
        ],
        masterName: "sessions",
        password: "redis-secret",
        sentinelPassword: "sentinel-secret",
      });
      assert.equal(config.redisWaitReplicas, 1);
      assert.equal(config.redisWaitTimeoutMs, 250);
      // Sentinel counts as Redis: more than one worker is allowed.
      assert.equal(loadConfig({ REDIS_SENTINELS: "s1:26379", REDIS_SENTINEL_MASTER: "m", WORKERS: "2" }).workers, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("Sentinel with ACL users, a database and TLS", () => {
    const dir = mkdtempSync(join(tmpdir(), "sessiond-config-"));
    try {
      writeFileSync(join(dir, "redis"), "redis-secret");
      writeFileSync(join(dir, "sentinel"), "sentinel-secret");
      writeFileSync(join(dir, "ca.pem"), "PEM");
      const config = loadConfig({
        REDIS_SENTINELS: "s1:26379",
        REDIS_SENTINEL_MASTER: "sessions",
        REDIS_USERNAME: "app",
        REDIS_PASSWORD_FILE: join(dir, "redis"),
        REDIS_SENTINEL_USERNAME: "watcher",
        REDIS_SENTINEL_PASSWORD_FILE: join(dir, "sentinel"),
        REDIS_DB: "3",
        REDIS_SENTINEL_TLS: "true",
        REDIS_SENTINEL_TLS_CA_FILE: join(dir, "ca.pem"),
      });
      assert.deepEqual(config.redisSentinel, {
        sentinels: [{ host: "s1", port: 26379 }],
        masterName: "sessions",
        password: "redis-secret",
        sentinelPassword: "sentinel-secret",
        username: "app",
        sentinelUsername: "watcher",
        db: 3,
        tls: { ca: "PEM" },
      });
      const sentinel = { REDIS_SENTINELS: "s1:26379", REDIS_SENTINEL_MASTER: "m" };
      assert.deepEqual(loadConfig({ ...sentinel, REDIS_SENTINEL_TLS: "true" }).redisSentinel?.tls, {});
      assert.equal(loadConfig({ ...sentinel, REDIS_DB: "0" }).redisSentinel?.db, undefined);
      assert.match(problems({ ...sentinel, REDIS_DB: "x" }).join("\n"), /REDIS_DB="x" must be a whole number from 0 to 65535/);
      assert.match(problems({ ...sentinel, REDIS_USERNAME: "app" }).join("\n"), /REDIS_USERNAME needs REDIS_PASSWORD_FILE/);
      assert.match(problems({ ...sentinel, REDIS_SENTINEL_USERNAME: "w" }).join("\n"), /REDIS_SENTINEL_USERNAME needs REDIS_SENTINEL_PASSWORD_FILE/);
      assert.match(problems({ ...sentinel, REDIS_SENTINEL_TLS_CA_FILE: join(dir, "ca.pem") }).join("\n"), /REDIS_SENTINEL_TLS_CA_FILE needs REDIS_SENTINEL_TLS=true/);
      assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_DB: "3" }).join("\n"), /REDIS_DB needs REDIS_SENTINELS \(with REDIS_URL, the db goes in the URL/);
      assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_SENTINEL_TLS: "true" }).join("\n"), /REDIS_SENTINEL_TLS needs REDIS_SENTINELS \(with REDIS_URL, use rediss:\/\/\)/);
      assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_USERNAME: "app" }).join("\n"), /REDIS_USERNAME needs REDIS_CLUSTER_NODES or REDIS_SENTINELS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("defaults: no Sentinel, no WAIT", () => {
    const config = loadConfig({});
    assert.equal(config.redisSentinel, undefined);
    assert.equal(config.redisWaitReplicas, 0);
    assert.equal(config.redisWaitTimeoutMs, 500);
  });

  test("contradictions and bad values are named", () => {
    assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_SENTINELS: "s:26379", REDIS_SENTINEL_MASTER: "m" }).join("\n"), /REDIS_URL and REDIS_SENTINELS are both set/);
    assert.match(problems({ REDIS_SENTINELS: "s:26379" }).join("\n"), /REDIS_SENTINELS needs REDIS_SENTINEL_MASTER/);
    assert.match(problems({ REDIS_SENTINELS: "s:26379,nope", REDIS_SENTINEL_MASTER: "m" }).join("\n"), /REDIS_SENTINELS: "nope" is not host:port/);
    assert.match(problems({ REDIS_SENTINELS: "s:0", REDIS_SENTINEL_MASTER: "m" }).join("\n"), /REDIS_SENTINELS: "s:0" is not host:port/);
    assert.match(problems({ REDIS_SENTINEL_MASTER: "m" }).join("\n"), /REDIS_SENTINEL_MASTER needs REDIS_SENTINELS/);
    assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_PASSWORD_FILE: "/x" }).join("\n"), /REDIS_PASSWORD_FILE needs REDIS_SENTINELS or REDIS_CLUSTER_NODES \(with REDIS_URL, the password goes in the URL\)/);
    const unreadable = problems({ REDIS_SENTINELS: "s:26379", REDIS_SENTINEL_MASTER: "m", REDIS_SENTINEL_PASSWORD_FILE: "/nonexistent/secret" }).join("\n");
    assert.match(unreadable, /REDIS_SENTINEL_PASSWORD_FILE: cannot read "\/nonexistent\/secret" \(ENOENT\)/);
    assert.match(problems({ REDIS_WAIT_REPLICAS: "1" }).join("\n"), /REDIS_WAIT_REPLICAS needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES/);
    assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_WAIT_REPLICAS: "-1" }).join("\n"), /REDIS_WAIT_REPLICAS="-1" must be a whole number from 0 to 100/);
    assert.match(problems({ REDIS_URL: "redis://h:6379", REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT: "500" }).join("\n"), /REDIS_WAIT_TIMEOUT="500" needs a unit/);
    assert.match(
      problems({ REDIS_URL: "redis://h:6379", REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT: "2s", REDIS_COMMAND_TIMEOUT: "2s" }).join("\n"),
      /REDIS_WAIT_TIMEOUT \(2000 ms\) must be shorter than REDIS_COMMAND_TIMEOUT \(2000 ms\)/,
    );
  });
});
