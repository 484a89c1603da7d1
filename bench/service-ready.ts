/**
 * Waits for a service process a bench started to answer /readyz, so that no
 * measurement starts against a service still connecting to Redis.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../test/support/redis-server.js";

/** Resolves once `${url}/readyz` answers 200; rejects when the process exits first or `timeoutMs` passes. */
export async function waitForServiceReady(child: ChildProcess, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("the service did not become ready");
    await sleep(200);
  }
}

/**
 * src/main.ts of the checkout at `root` in its own process on a free loopback
 * port with `env` added (stdout discarded, stderr inherited), once ready.
 */
export async function startServiceProcess(root: string, env: Record<string, string>, nodeFlags: readonly string[] = []): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const devNull = openSync("/dev/null", "w");
  const child = spawn(process.execPath, [...nodeFlags, "--import", "tsx", join(root, "src/main.ts")], {
    cwd: root,
    env: { ...process.env, HOST: "127.0.0.1", PORT: String(port), ALLOW_PLAINTEXT: "true", ...env },
    stdio: ["ignore", devNull, "inherit"],
  });
  closeSync(devNull);
  const url = `http://127.0.0.1:${port}`;
  await waitForServiceReady(child, url);
  return { child, url };
}
