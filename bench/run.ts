/**
 * The benchmark (`npm run bench`). Not a test: it measures and reports, and
 * never runs under `npm test`. It measures every benchmark target of issues 2
 * and 3 in one run and overwrites bench/RESULTS.md:
 *
 * 1. Throughput (issue 2), on private redis-servers, with 64 concurrent callers
 *    in a separate load-generator process (bench/load-generator.ts):
 *    CreateSession, GetSession, ExtendSession, CloseSession over gRPC (h2c)
 *    and grpc.health.v1.Health/Check (the framework's ceiling for a trivial
 *    RPC) against the service in a process of its own (bench/service-process.ts:
 *    src/main.ts on RedisStore, metadata encryption on), whose CPU and GC time
 *    are measured alone; then the same four operations done directly with
 *    ioredis (the floor a backend would have without the service).
 * 2. A/B of Node flags: the service runs twice, side by side, each with its own
 *    redis-server and load generator: without flags and with the candidate
 *    flags (CANDIDATE_FLAGS). Their rounds alternate (A then B, then B then A),
 *    so the machine's drift hits both alike. The targets are judged on the
 *    variant whose flags `npm run start:prod` uses (read from package.json).
 * 3. Redis memory per session at 100k sessions (metadata sealed as the service
 *    stores it, with the server settings it makes at start), with and without
 *    the expiry machinery, the event log apart, and bytes per kind of key
 *    (bench/redis-memory.ts).
 * 4. Expiry lag, Redis's own `expired` notification lag, and fan-out to 1k and
 *    10k watchers (issue 3; bench/watch-bench.ts), with the production flags;
 *    probes due on a schedule written with the store's create script
 *    (bench/expiry-schedule.ts); a step that fails or runs out of the part's
 *    time budget is reported as such next to what the others measured.
 * 5. The archive sink to PostgreSQL (issue 16; bench/parts/archive.ts running
 *    bench/archive-bench.ts): rows/s with 1k expirations/s, sink lag.
 * 6. Archive bytes per ended session and event delivery after a dropped Redis
 *    connection (issue 12; bench/faults-bench.ts).
 * 7. Wire cost (issue 10; bench/wire-bench.ts): bare grpc-js and connect-node
 *    anchors next to sessiond with WORKERS=1 and 2, under h2load and a grpc-js
 *    client, with server CPU per call; sessiond with READ_CACHE_MAX_AGE too.
 *    Then the window of such a copy (bench/copy-window-bench.ts): how long a
 *    write through another process takes to reach it.
 * 8. Scale (issue 10; bench/scale-bench.ts): ListSessions by user at 10k, 100k
 *    and 1M live sessions, expiry lag at 1M live with 1k expirations/s against
 *    a 10k stack in alternating rounds.
 * 9. Under attack (issue 11; bench/flood-bench.ts): authenticated GetSession
 *    p99 and the service's peak RSS with no flood, during a 20,000-idle-connection
 *    flood and a 20,000-stream flood, and after them.
 * 10. Tenant isolation (issue 13; bench/tenant-isolation.ts): another tenant's
 *    p99, from a process of its own, with a neighbour at 1M sessions and 100k
 *    data sources vs a small one.
 * 11. REDIS_WAIT_REPLICAS (issue 14; bench/replica-wait-bench.ts): CreateSession
 *    and SetData with WAIT 1 against no WAIT on a primary and a replica.
 *
 * A small shared machine's speed drifts by tens of percent
 * within a minute. The ratios matter more than the absolute numbers, so the
 * operations that are compared are measured in interleaved rounds (Create,
 * Check, Get, Extend, Close, then again) rather than one long phase each:
 * drift then hits every operation alike instead of whichever ran at a bad time.
 * The target ratios are the median over rounds of each round's ratio, so one
 * round disturbed by another process on the machine does not decide them.
 *
 * Environment: BENCH_DURATION_MS (default 6000), measured time per operation
 * and variant, split over the rounds; BENCH_WARMUP_MS (default 1000), unmeasured
 * time per operation before the first round; BENCH_LOG_LEVEL (default info, the
 * service's own default) for the service's logger, whose lines go to /dev/null;
 * BENCH_PARTS (default: every part in PARTS below) to run only some parts, by name;
 * BENCH_ISOLATION_SESSIONS / BENCH_ISOLATION_SOURCES (default 1000000 / 100000, the size) for part 10;
 * BENCH_CANDIDATE_FLAGS (default "--max-semi-space-size=64") for the B side of the A/B.
 *
 * Layout: this file runs the parts in order and writes the report; each part
 * (measure, Targets rows, its RESULTS.md section) is a module in bench/parts/
 * listed in PARTS below; settings.ts holds sizes and targets, processes.ts the
 * child processes, statistics.ts the ratios, report.ts and format.ts the
 * Markdown.
 */
import { writeFile } from "node:fs/promises";
import * as os from "node:os";
import { join } from "node:path";
import { flagsLabel } from "./format.js";
import { listed, type BenchPart, type PartContext, type PartResults } from "./part.js";
import { floodPart } from "./parts/flood.js";
import { isolationPart } from "./parts/isolation.js";
import { archivePart } from "./parts/archive.js";
import { memoryPart } from "./parts/memory.js";
import { flagVariants, throughputPart } from "./parts/throughput.js";
import { scalePart } from "./parts/scale.js";
import { watchPart } from "./parts/watch.js";
import { faultsPart } from "./parts/faults.js";
import { clusterPart } from "./parts/cluster.js";
import { wirePart } from "./parts/wire.js";
import { replicaWaitPart } from "./parts/replica-wait.js";
import { copyWindowPart } from "./parts/copy-window.js";
import { machineInfo, running } from "./processes.js";
import { render, type PartTime } from "./report.js";
import { HERE, PARTS as SELECTED, productionNodeFlags } from "./settings.js";

/** Every part, in the order it runs and reports. A new part: a module in bench/parts/, listed here. */
const PARTS: readonly BenchPart<unknown>[] = [
  listed(throughputPart),
  listed(memoryPart),
  listed(watchPart),
  listed(archivePart),
  listed(faultsPart),
  listed(wirePart),
  listed(copyWindowPart),
  listed(scalePart),
  listed(floodPart),
  listed(isolationPart),
  listed(replicaWaitPart),
  listed(clusterPart),
];

async function main(): Promise<void> {
  // A closed stdout (`npm run bench | head`) must not kill the run halfway and orphan redis-server,
  // the service and the load generator: finish, clean up, and still write RESULTS.md.
  process.stdout.on("error", () => {});
  process.stderr.on("error", () => {});
  const startedAt = Date.now();
  const machine = machineInfo();
  const logLevel = process.env["BENCH_LOG_LEVEL"] || "info";
  const productionFlags = productionNodeFlags();
  // Fails before anything starts when start:prod runs flags the A/B does not measure, or BENCH_PARTS names no part.
  flagVariants(productionFlags);
  const unknown = [...(SELECTED ?? [])].filter((name) => !PARTS.some((part) => part.name === name));
  if (unknown.length > 0) throw new Error(`BENCH_PARTS names no part: ${unknown.join(", ")} (parts: ${PARTS.map((p) => p.name).join(", ")})`);
  console.log(`sessiond benchmark: ${machine.cpuModel} x${machine.cores}, node ${machine.node}, redis ${machine.redis}; production flags: ${flagsLabel(productionFlags)}`);

  // Stopped from outside (Ctrl-C, or a parent such as npm going away): take every child process down too.
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`\n${signal}: stopping the benchmark`);
    void Promise.allSettled([...running].map((p) => p.stop())).finally(() => process.exit(1));
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, onSignal);
  try {
    const context: PartContext = { machine, logLevel, productionFlags };
    const byPart = new Map<BenchPart<unknown>, unknown>();
    const partTimes: PartTime[] = [];
    for (const part of PARTS) {
      if (SELECTED !== undefined && !SELECTED.has(part.name)) continue;
      const started = Date.now();
      byPart.set(part, await part.run(context));
      const time = { name: part.name, seconds: (Date.now() - started) / 1000, loadAvg: os.loadavg()[0] ?? Number.NaN };
      partTimes.push(time);
      console.log(`part ${time.name}: ${time.seconds.toFixed(0)} s (load average ${time.loadAvg.toFixed(1)})`);
    }
    const parts: PartResults = { get: <R>(part: BenchPart<R>) => byPart.get(listed(part)) as R | undefined };
    const markdown = render({
      date: new Date().toISOString(),
      machine,
      logLevel,
      productionFlags,
      context,
      registered: PARTS,
      parts,
      totalSeconds: (Date.now() - startedAt) / 1000,
      partTimes,
      loadAvgAtEnd: os.loadavg().map((n) => n.toFixed(2)).join(" "),
    });
    await writeFile(join(HERE, "RESULTS.md"), markdown);
    console.log("\n" + markdown);
    // Not a test, but a run whose calls failed measured nothing: say so in the exit code.
    if ([...byPart].some(([part, result]) => part.failed(result))) process.exitCode = 1;
  } finally {
    await Promise.allSettled([...running].map((p) => p.stop()));
  }
}

await main();
