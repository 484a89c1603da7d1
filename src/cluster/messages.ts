/**
 * The messages between the primary process and its workers (WORKERS > 1),
 * over node:cluster's IPC channel.
 */

/** The environment variable through which the primary gives each worker its slot (primary.ts). */
export const WORKER_SLOT_ENV = "SESSIOND_WORKER_SLOT";

/** Primary → worker: drain and exit (the primary owns the signals). */
export interface ShutdownMessage {
  readonly type: "sessiond:shutdown";
}

/** Worker → primary: the metrics of every worker, for one /metrics scrape. */
export interface ScrapeRequest {
  readonly type: "sessiond:scrape";
  readonly id: number;
}

/** Primary → worker: the answer to a ScrapeRequest. */
export interface ScrapeReply {
  readonly type: "sessiond:scrape-reply";
  readonly id: number;
  readonly body?: string;
  readonly error?: string;
}

export type ClusterMessage = ShutdownMessage | ScrapeRequest | ScrapeReply;

export function isClusterMessage(message: unknown): message is ClusterMessage {
  return typeof message === "object" && message !== null && typeof (message as { type?: unknown }).type === "string" && (message as { type: string }).type.startsWith("sessiond:");
}
