/**
 * Waits for a service process a bench started to answer /readyz, so that no
 * measurement starts against a service still connecting to Redis.
 */
import type { ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

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
