/**
 * The worker side of WORKERS > 1: /metrics answers with every worker's
 * metrics (the primary gathers them with prom-client's AggregatorRegistry),
 * and the primary, not a signal, tells the worker when to shut down.
 */
import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import { isClusterMessage, WORKER_SLOT_ENV, type ScrapeRequest } from "./messages.js";

/** Longer than prom-client's own 5 s bound on gathering the workers' metrics. */
const SCRAPE_TIMEOUT_MS = 6000;

export function isWorker(): boolean {
  return cluster.isWorker;
}

/**
 * Whether this process's expiry scheduler should wake early for a session due
 * before its planned wake-up: a single process's does, and of a host's
 * workers the one in slot 0, so that a host holds one blocking wake-up read
 * per partition (RedisStore.waitDue) and one scheduler answers each. Every
 * worker's scheduler still looks at the due queue (expiry is archived once
 * whoever looks), so the others only lose the early wake-up, which slot 0's
 * gives the host.
 */
export function expiryWakesEarly(): boolean {
  return !cluster.isWorker || (process.env[WORKER_SLOT_ENV] ?? "0") === "0";
}

/**
 * Lets the primary read `registry` for cluster-wide scrapes, and returns the
 * scrape function for /metrics: every worker's series, counters and
 * histograms summed (aggregator per metric, see metrics.ts).
 */
export function clusterScrape(registry: Registry): () => Promise<{ readonly contentType: string; readonly body: string }> {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one is what makes prom-client answer the primary's requests in this worker.
  new AggregatorRegistry();
  let nextId = 0;
  const pending = new Map<number, { resolve: (body: string) => void; reject: (error: Error) => void }>();
  process.on("message", (message: unknown) => {
    if (!isClusterMessage(message) || message.type !== "sessiond:scrape-reply") return;
    const waiter = pending.get(message.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.body !== undefined) waiter.resolve(message.body);
    else waiter.reject(new Error(message.error ?? "no metrics from the primary"));
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error("the primary did not answer the metrics request"));
      }, SCRAPE_TIMEOUT_MS);
      pending.set(id, {
        resolve: (body) => {
          clearTimeout(timer);
          resolve({ contentType: registry.contentType, body });
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      const request: ScrapeRequest = { type: "sessiond:scrape", id };
      process.send?.(request);
    });
}

/**
 * Calls `shutdown` once when the primary asks, or when the primary is gone
 * (the IPC channel closes), and keeps SIGINT and SIGTERM from killing the
 * worker: a terminal's Ctrl-C reaches every process of the group, and the
 * primary drains the workers itself.
 */
export function onPrimaryShutdown(shutdown: () => void): void {
  let called = false;
  const once = (): void => {
    if (called) return;
    called = true;
    shutdown();
  };
  process.on("message", (message: unknown) => {
    if (isClusterMessage(message) && message.type === "sessiond:shutdown") once();
  });
  process.on("disconnect", once);
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => {});
}
