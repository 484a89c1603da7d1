/**
 * WORKERS > 1: the primary process forks that many workers, which each run
 * the whole service (src/main.ts) and share the one port through
 * node:cluster (the primary accepts connections and hands them to workers in
 * turn). The primary serves nothing itself; it
 *
 * - owns SIGINT/SIGTERM: the first one asks every worker to drain and exit
 *   (each serves on for SHUTDOWN_DELAY with readiness NOT_SERVING, then has
 *   SHUTDOWN_TIMEOUT), a worker still there a second later is killed; a second signal kills them all at once;
 * - gives each worker a slot (0 to WORKERS - 1) that its replacement inherits:
 *   slot 0's expiry scheduler wakes early for a session due sooner than it
 *   planned (worker.ts), so a host holds one such wait, not one per worker;
 * - replaces a worker that dies while the service runs, and stops everything
 *   when a worker fails before it ever listened (a start failure would only
 *   repeat);
 * - answers the workers' /metrics requests with every worker's metrics
 *   (prom-client's AggregatorRegistry).
 *
 * Workers share nothing in process: sessions, expiry and watch events go
 * through Redis exactly as between replicas on separate machines, which is
 * why config.ts refuses WORKERS > 1 without REDIS_URL.
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry } from "prom-client";
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import { isClusterMessage, WORKER_SLOT_ENV, type ScrapeReply, type ShutdownMessage } from "./messages.js";

const EXIT_FAILURE = 1;
/** A worker that dies while serving is replaced after this pause, so a crash loop cannot spin. */
const RESTART_DELAY_MS = 1000;
/** Beyond SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT (which each worker enforces on itself) before a worker is killed. */
const KILL_GRACE_MS = 1000;

export function runPrimary(config: Config, logger: Logger): void {
  const aggregator = new AggregatorRegistry();
  const listening = new WeakSet<Worker>();
  let stopping = false;
  let failed = false;

  // Slot 0's worker is the one whose expiry scheduler wakes early (worker.ts); a replacement takes its slot.
  const slots = new WeakMap<Worker, number>();
  const fork = (slot: number): void => {
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot) });
    slots.set(worker, slot);
    worker.once("listening", () => {
      listening.add(worker);
      logger.info({ worker: worker.id, pid: worker.process.pid }, "worker listening");
    });
  };

  cluster.on("message", (worker: Worker, message: unknown) => {
    if (!isClusterMessage(message) || message.type !== "sessiond:scrape") return;
    const reply = (body: ScrapeReply): void => {
      if (worker.isConnected()) worker.send(body);
    };
    aggregator.clusterMetrics().then(
      (body) => reply({ type: "sessiond:scrape-reply", id: message.id, body }),
      (error: unknown) => reply({ type: "sessiond:scrape-reply", id: message.id, error: error instanceof Error ? error.message : "scrape failed" }),
    );
  });

  cluster.on("exit", (worker: Worker, code: number | null, signal: string | null) => {
    if (code !== 0) failed = true;
    if (stopping) {
      if (Object.keys(cluster.workers ?? {}).length === 0) {
        logger.info({ failed }, "all workers stopped");
        process.exit(failed ? EXIT_FAILURE : 0);
      }
      return;
    }
    if (!listening.has(worker)) {
      logger.fatal({ worker: worker.id, code, signal }, "a worker failed to start: stopping");
      stop();
      return;
    }
    logger.error({ worker: worker.id, code, signal }, "a worker died: starting another");
    setTimeout(() => {
      if (!stopping) fork(slots.get(worker) ?? 0);
    }, RESTART_DELAY_MS).unref();
  });

  function stop(): void {
    if (stopping) return;
    stopping = true;
    const message: ShutdownMessage = { type: "sessiond:shutdown" };
    for (const worker of Object.values(cluster.workers ?? {})) {
      if (worker?.isConnected()) worker.send(message);
    }
    setTimeout(() => {
      logger.error({ delayMs: config.shutdownDelayMs, timeoutMs: config.shutdownTimeoutMs }, "workers still running after SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT: killing them");
      killAll();
      process.exit(EXIT_FAILURE);
    }, config.shutdownDelayMs + config.shutdownTimeoutMs + KILL_GRACE_MS).unref();
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(failed ? EXIT_FAILURE : 0);
  }

  function killAll(): void {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGKILL");
  }

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, "second signal: killing the workers without waiting");
      killAll();
      process.exit(EXIT_FAILURE);
    }
    logger.info({ signal, workers: config.workers, delayMs: config.shutdownDelayMs, timeoutMs: config.shutdownTimeoutMs }, "shutting down the workers");
    stop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  logger.info({ workers: config.workers }, `starting ${config.workers} workers`);
  for (let slot = 0; slot < config.workers; slot++) fork(slot);
}
