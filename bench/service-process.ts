/**
 * The service under benchmark, in a process of its own: the production entry
 * point (src/main.ts, configured by environment variables, logs and audit
 * records on stdout, which goes to /dev/null) started with the Node flags under
 * test. A process of its own lets the benchmark set those flags and read the
 * service's CPU and GC time without counting the runner's.
 */
import { fork, type ChildProcess } from "node:child_process";
import { openSync, closeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../test/support/redis-server.js";
import type { ProbeReply, ProbeRequest } from "./server-probe.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const START_TIMEOUT_MS = 30_000;

export interface ServiceUsage {
  readonly cpuUs: number;
  readonly gcUs: number;
  readonly gcCount: number;
  readonly rss: number;
}

export class ServiceProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly nodeFlags: readonly string[],
  ) {}

  /** Starts src/main.ts with `nodeFlags` and `env` on a free port, and waits until /healthz answers. */
  static async start(nodeFlags: readonly string[], env: Readonly<Record<string, string>>): Promise<ServiceProcess> {
    const port = await freePort();
    const devNull = openSync("/dev/null", "w");
    const child = fork(join(ROOT, "src/main.ts"), [], {
      cwd: ROOT,
      execArgv: [...nodeFlags, "--import", "tsx", "--import", join(HERE, "server-probe.ts")],
      // No readiness delay on SIGTERM: nothing routes to a benchmark's service but the benchmark.
      env: { ...process.env, SHUTDOWN_DELAY: "0s", ...env, HOST: "127.0.0.1", PORT: String(port) },
      stdio: ["ignore", devNull, "inherit", "ipc"],
    });
    closeSync(devNull);
    const service = new ServiceProcess(child, `http://127.0.0.1:${port}`, nodeFlags);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the service exited with code ${child.exitCode} before it answered`);
      try {
        if ((await fetch(`${service.url}/healthz`)).ok) return service;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await service.stop();
        throw new Error(`the service did not answer /healthz within ${START_TIMEOUT_MS} ms`);
      }
      await sleep(50);
    }
  }

  /** Largest resident set size any usage() call has seen, bytes. */
  peakRss = 0;

  /** CPU and GC time the service process has used so far. */
  usage(): Promise<ServiceUsage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.off("message", onMessage);
        reject(new Error("the service process did not report its CPU time within 5 s"));
      }, 5000);
      const onMessage = (reply: ProbeReply): void => {
        if (reply.type !== "usage") return;
        clearTimeout(timer);
        this.child.off("message", onMessage);
        this.peakRss = Math.max(this.peakRss, reply.rss);
        resolve({ cpuUs: reply.cpuUs, gcUs: reply.gcUs, gcCount: reply.gcCount, rss: reply.rss });
      };
      this.child.on("message", onMessage);
      this.child.send({ type: "usage" } satisfies ProbeRequest);
    });
  }

  /** SIGTERM (graceful shutdown), SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void> {
    return stopProcess(this.child);
  }
}

/**
 * SIGTERM, then SIGKILL if the process has not exited within graceMs. A
 * benchmark must not leave a service behind: a service run through tsx can
 * hang in its shutdown (its main thread waiting on tsx's loader thread), and
 * its inherited stderr would keep `npm run bench` from finishing.
 */
export async function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => {
    process.stderr.write(`the service (pid ${child.pid}) did not exit within ${graceMs} ms of SIGTERM: killing it\n`);
    child.kill("SIGKILL");
  }, graceMs);
  await exited;
  clearTimeout(timer);
}
