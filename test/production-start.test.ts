/**
 * What the Docker image runs, without Docker (there is no engine here): the
 * build (tsc with tsconfig.build.json, as `npm run build`), a clean
 * `npm ci --omit=dev` tree in a temporary directory with nothing else of the
 * work tree, and the image's exact command, `node dist/src/main.js`, with
 * NODE_ENV=production. It must start, answer /healthz, serve an RPC, and stop
 * with exit code 0 on SIGTERM.
 *
 * Also what Docker would do with the rest of the Dockerfile: every FROM pinned
 * by digest on a supported Node major; the README's `docker run` example run
 * as written (the image's ENV plus the example's -e settings, against a real
 * redis-server started with the example's arguments, its host name pointed at
 * that server); and the HEALTHCHECK script run against the started service
 * (0), a port with nothing listening (1) and a service that is not healthy (1).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { startSessiond, type SessiondProcess } from "./support/process.js";
import { freePort, startRedisServer } from "./support/redis-server.js";

const run = promisify(execFile);
const DOCKERFILE_CMD = ["node", "dist/src/main.js"];

let dir: string;
let proc: SessiondProcess | undefined;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sessiond-prod-"));
  // The build stage: the work tree's toolchain compiles src and gen.
  await run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.build.json", "--outDir", join(dir, "dist")]);
  // The runtime stage: package files and production dependencies only.
  copyFileSync("package.json", join(dir, "package.json"));
  copyFileSync("package-lock.json", join(dir, "package-lock.json"));
  // As the Dockerfile does: npm ci's postinstall applies them (patch-package).
  cpSync("patches", join(dir, "patches"), { recursive: true });
  await run("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"], { cwd: dir, timeout: 120_000 });
});

after(() => {
  proc?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("the production start command", { timeout: 60_000 }, () => {
  it("is the Dockerfile's CMD", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8");
    assert.ok(dockerfile.includes(`CMD ${JSON.stringify(DOCKERFILE_CMD).replace(/,/g, ", ")}`), "Dockerfile CMD");
    assert.match(dockerfile, /npm ci --omit=dev/);
    assert.match(dockerfile, /^USER node$/m);
    assert.match(dockerfile, /^HEALTHCHECK .*CMD \["\/usr\/local\/bin\/sessiond-healthcheck"\]$/m, "the healthcheck is the script, not a node process");
    assert.match(dockerfile, /^COPY .*deploy\/docker\/healthcheck\.sh \/usr\/local\/bin\/sessiond-healthcheck$/m);
    assert.match(readFileSync("deploy/docker/healthcheck.sh", "utf8"), /GET \/healthz HTTP\/1\.1/);
  });

  it("pins every stage to one supported Node LTS image by digest", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8");
    const arg = /^ARG NODE_IMAGE=(node:(\d+)-[a-z0-9.-]+@sha256:[0-9a-f]{64})$/m.exec(dockerfile);
    assert.ok(arg, "ARG NODE_IMAGE=node:<major>-<variant>@sha256:<64 hex>");
    // Node 22 and 24 are the LTS lines in support (20 ended in April 2026).
    assert.ok(["22", "24"].includes(arg[2] ?? ""), `Node ${arg[2]} is a supported LTS`);
    const froms = dockerfile.split("\n").filter((l) => l.startsWith("FROM "));
    assert.equal(froms.length, 3);
    for (const from of froms) assert.match(from, /^FROM \$\{NODE_IMAGE\}( AS \w+)?$/, from);
  });

  it(".dockerignore keeps node_modules, dist, .git and the tests out of the build context, and lets in what the Dockerfile copies", () => {
    const rules = readFileSync(".dockerignore", "utf8")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    assert.equal(rules[0], "*", "an allowlist");
    const allowed = rules.filter((r) => r.startsWith("!")).map((r) => r.slice(1).replace(/\/$/, ""));
    for (const out of ["node_modules", "dist", ".git", "test", "bench", ".env"]) assert.ok(!allowed.includes(out), out);
    const copied = [...readFileSync("Dockerfile", "utf8").matchAll(/^COPY (?!--from)(?:--\S+ )*(.+) \S+$/gm)].flatMap((m) => (m[1] ?? "").split(" "));
    for (const source of copied) assert.ok(allowed.includes(source.replace(/\/$/, "")), `${source} is in the context`);
  });

  it("has no dev dependency in the tree, but where a production dependency needs the same package", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { devDependencies: Record<string, string> };
    const modules = join(dir, "node_modules");
    const needed = new Set<string>();
    for (const entry of readdirSync(modules)) {
      const names = entry.startsWith("@") ? readdirSync(join(modules, entry)).map((n) => `${entry}/${n}`) : [entry];
      for (const name of names) {
        const file = join(modules, name, "package.json");
        if (!existsSync(file)) continue;
        const manifest = JSON.parse(readFileSync(file, "utf8")) as { dependencies?: Record<string, string> };
        for (const dependency of Object.keys(manifest.dependencies ?? {})) needed.add(dependency);
      }
    }
    for (const name of Object.keys(pkg.devDependencies)) {
      if (needed.has(name)) continue;
      assert.equal(existsSync(join(modules, name)), false, `${name} is a dev dependency`);
    }
  });

  it("has the dependency patches applied (patches/, by npm ci's postinstall)", () => {
    const decoder = readFileSync(join(dir, "node_modules/ioredis/built/resp/decoder.js"), "utf8");
    assert.doesNotMatch(decoder, /__classPrivateFieldGet\(this,/, "patches/ioredis+6.0.0.patch");
  });

  it("starts from the clean tree, answers /healthz and an RPC, and exits 0 on SIGTERM", async () => {
    const [, script] = DOCKERFILE_CMD;
    proc = await startSessiond({ cwd: dir, args: [script ?? ""], env: { NODE_ENV: "production", LOG_LEVEL: "info" } });
    const health = await fetch(`${proc.url}/healthz`);
    assert.equal(health.status, 200);
    const created = await fetch(`${proc.url}/session.v1.SessionService/CreateSession`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: "prod", dataSource: "docker" }),
    });
    assert.equal(created.status, 200, await created.clone().text());
    assert.equal((await fetch(`${proc.url}/metrics`)).status, 200);
    proc.child.kill("SIGTERM");
    assert.equal(await proc.exited, 0);
  });

  it("runs the README's docker run example as written, and its HEALTHCHECK script passes against it", async () => {
    const readme = readFileSync("README.md", "utf8");
    const block = /```sh\n(docker build -t sessiond \.[\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, "the README's docker example");
    const commands = block.replace(/\\\n\s*/g, " ").split("\n").filter((l) => l.startsWith("docker run"));
    const redisRun = commands.find((c) => c.includes("redis-server"));
    const serviceRun = commands.find((c) => c.trimEnd().endsWith(" sessiond"));
    assert.ok(redisRun && serviceRun, block);
    const redisName = /--name (\S+)/.exec(redisRun)?.[1] ?? "";
    // The Redis container, as its arguments say (password, noeviction, notifications).
    const redisArgs = redisRun.slice(redisRun.indexOf("redis-server") + "redis-server".length).trim().split(/\s+/);
    // The password is set once the server answers (the test harness's readiness check pings without one).
    const passwordAt = redisArgs.indexOf("--requirepass");
    const password = passwordAt === -1 ? undefined : redisArgs.splice(passwordAt, 2)[1];
    assert.ok(password, "the example gives Redis a password");
    const redis = await startRedisServer(redisArgs);
    try {
      const admin = redis.client();
      await admin.config("SET", "requirepass", password);
      admin.disconnect();
      const { stdout: denied } = await run("redis-cli", ["-p", String(redis.port), "config", "get", "maxmemory-policy"]);
      assert.match(denied, /NOAUTH/, "Redis wants the password");
      // The -e settings, evaluated by a shell as docker's caller would; the container's host name is the local server.
      const settings: Record<string, string> = {};
      for (const match of serviceRun.matchAll(/-e (\w+)=("[^"]*"|\S+)/g)) {
        const { stdout } = await run("bash", ["-c", `printf %s ${match[2]}`]);
        settings[match[1] ?? ""] = stdout.replace(`@${redisName}:6379`, `@127.0.0.1:${redis.port}`);
      }
      assert.deepEqual(Object.keys(settings).sort(), ["ALLOW_INSECURE", "ENCRYPTION_KEYS", "REDIS_URL"]);
      const imageEnv = Object.fromEntries(
        [...readFileSync("Dockerfile", "utf8").matchAll(/^ENV (.+)$/gm)].flatMap((m) => (m[1] ?? "").split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)] as [string, string])),
      );
      const port = await freePort();
      const [, script] = DOCKERFILE_CMD;
      const env: Record<string, string> = { ...imageEnv, SOURCE_REVISION: "test", ...settings, PORT: String(port), LOG_LEVEL: "info" };
      proc = await startSessiond({ cwd: dir, args: [script ?? ""], env });
      assert.equal(proc.startup["store"], "redis");
      const created = await fetch(`http://127.0.0.1:${port}/session.v1.SessionService/CreateSession`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ userId: "readme", dataSource: "docker" }),
      });
      assert.equal(created.status, 200, await created.clone().text());

      const healthcheck = (environment: Record<string, string>) =>
        run("deploy/docker/healthcheck.sh", [], { env: { PATH: process.env["PATH"] ?? "", ...environment } }).then(
          () => 0,
          (error: { code?: number }) => error.code ?? -1,
        );
      assert.equal(await healthcheck({ HOST: env["HOST"] ?? "", PORT: String(port) }), 0, "healthy");
      assert.equal(await healthcheck({ PORT: String(await freePort()) }), 1, "nothing listening");
      const unhealthy = http.createServer((_req, res) => res.writeHead(503).end("not ready"));
      await new Promise<void>((resolve) => unhealthy.listen(0, "127.0.0.1", resolve));
      try {
        assert.equal(await healthcheck({ PORT: String((unhealthy.address() as AddressInfo).port) }), 1, "a 503");
      } finally {
        unhealthy.close();
      }
      proc.child.kill("SIGTERM");
      assert.equal(await proc.exited, 0);
    } finally {
      await redis.stop();
    }
  });
});
