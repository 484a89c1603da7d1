/**
 * Log format: readable lines (pino-pretty) with LOG_FORMAT=pretty or, by
 * default, when stdout is a terminal (a real pseudo-terminal from script(1)
 * here); JSON lines otherwise. Either way one service line per RPC.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createSessionClient } from "@sessiond/client";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const run = promisify(execFile);

/** Runs src/main.ts with `env`, makes two RPCs once it listens, stops it; resolves with its stdout. */
function serveTwoCalls(env: Record<string, string>): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL: "", HOST: "127.0.0.1", PORT: "0", AUDIT_LOG: "off", LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let called = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      const address = /(http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)?.[1];
      if (address === undefined || called || !stdout.includes("listening")) return;
      called = true;
      const client = createSessionClient(address);
      void client
        .createSession({ userId: "u", dataSource: "d" })
        .then(() => client.getSession({ sessionId: "00000000-0000-4000-8000-000000000000" }))
        .catch(() => undefined)
        .finally(() => setTimeout(() => child.kill("SIGTERM"), 100));
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(killer);
      resolve({ code, stdout });
    });
  });
}

describe("log format", () => {
  test("LOG_FORMAT=pretty: readable lines with level names, one per RPC", async () => {
    const { code, stdout } = await serveTwoCalls({ LOG_FORMAT: "pretty" });
    assert.equal(code, 0);
    const lines = stdout.split("\n").filter((l) => l.trim() !== "");
    assert.equal(lines.filter((l) => l.startsWith("{")).length, 0, "no JSON lines");
    assert.ok(lines.some((l) => /\bINFO\b.*sessiond listening on/.test(l)), stdout);
    const rpc = lines.filter((l) => l.includes(" rpc session.v1.SessionService/"));
    assert.equal(rpc.length, 2, stdout);
    assert.match(rpc[0] ?? "", /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO.*: rpc session\.v1\.SessionService\/CreateSession ok [\d.]+ ms/);
    assert.match(rpc[1] ?? "", /WARN.*: rpc session\.v1\.SessionService\/GetSession not_found [\d.]+ ms/);
    assert.doesNotMatch(stdout, /"level":\d+/, "levels by name, not number");
  });

  test("default (auto) with stdout not a terminal: one JSON object per line, one per RPC", async () => {
    const { code, stdout } = await serveTwoCalls({});
    assert.equal(code, 0);
    const lines = stdout.split("\n").filter((l) => l.trim() !== "");
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(parsed.filter((l) => l["msg"] === "rpc").length, 2);
  });

  test("default (auto) on a terminal: pretty", async () => {
    // script(1) gives the command a pseudo-terminal as stdout, as an operator's shell does.
    const program = "import { createLogger } from './src/logging/logger.ts'; createLogger({ level: 'info' }).info({ method: 'm' }, 'hello from a terminal');";
    const { stdout } = await run("script", ["-qec", `${process.execPath} --import tsx -e "${program}"`, "/dev/null"], { cwd: ROOT, timeout: 30_000 });
    assert.match(stdout, /INFO.*hello from a terminal/);
    assert.doesNotMatch(stdout, /"level":30/);
  });
});
