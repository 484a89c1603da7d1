/**
 * What the Docker image runs, without Docker (there is no engine here): the
 * build (tsc with tsconfig.build.json, as `npm run build`), a clean
 * `npm ci --omit=dev` tree in a temporary directory with nothing else of the
 * work tree, and the image's exact command, `node dist/src/main.js`, with
 * NODE_ENV=production. It must start, answer /healthz, serve an RPC, and stop
 * with exit code 0 on SIGTERM.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startSessiond, type SessiondProcess } from "./support/process.js";

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
    assert.match(dockerfile, /^HEALTHCHECK .*\n?.*\/healthz/m);
  });

  it("has no dev dependency in the tree", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { devDependencies: Record<string, string> };
    for (const name of Object.keys(pkg.devDependencies)) {
      assert.equal(existsSync(join(dir, "node_modules", name)), false, `${name} is a dev dependency`);
    }
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
});
