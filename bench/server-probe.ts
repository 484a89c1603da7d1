/**
 * Preloaded (`node --import tsx --import bench/server-probe.ts src/main.ts`)
 * into the service process the benchmark starts, so that the runner can read
 * that process's own CPU and GC time over each phase. The service itself is
 * the production entry point, unchanged; this only answers the runner's
 * questions over the IPC channel that `fork` opens.
 *
 * GC time comes from the `gc` performance entries (each scavenge and
 * mark-compact pause on the main thread), which is what the Node flags under
 * test (e.g. --max-semi-space-size) change.
 */
import { PerformanceObserver } from "node:perf_hooks";

/** Runner → service process. */
export interface ProbeRequest {
  readonly type: "usage";
}

/** Service process → runner: totals since the process started. */
export interface ProbeReply {
  readonly type: "usage";
  /** User + system CPU time of the process, µs. */
  readonly cpuUs: number;
  /** Main-thread GC pauses, µs. */
  readonly gcUs: number;
  readonly gcCount: number;
  /** Resident set size now, bytes: what a larger young generation costs. */
  readonly rss: number;
}

let gcUs = 0;
let gcCount = 0;

if (process.send !== undefined) {
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcUs += entry.duration * 1000;
      gcCount += 1;
    }
  });
  observer.observe({ entryTypes: ["gc"] });

  process.on("message", (message: ProbeRequest) => {
    if (message.type !== "usage") return;
    const cpu = process.cpuUsage();
    process.send?.({ type: "usage", cpuUs: cpu.user + cpu.system, gcUs, gcCount, rss: process.memoryUsage.rss() } satisfies ProbeReply);
  });
  // The runner is gone: do not outlive it.
  process.on("disconnect", () => process.kill(process.pid, "SIGTERM"));
}
