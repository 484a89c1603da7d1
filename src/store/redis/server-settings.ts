/**
 * Keeps the Redis server settings the store relies on (compact-hashes.ts)
 * applied on every primary it writes to: at start, and again whenever a
 * connection to a primary becomes ready, because a restarted Redis forgets
 * CONFIG SET and a failover brings a primary with its own configuration. On a
 * Redis Cluster each primary gets them once per connection, and the set of
 * primaries is checked every RECHECK_INTERVAL_MS and on every topology change
 * ioredis reports, so a promoted replica gets them too.
 *
 * Expiry needs no server setting: the due queue is the scheduler's only clock
 * (keys.ts), so keyspace notifications (notify-keyspace-events) are neither
 * set nor required.
 */
import { Cluster, type Redis } from "ioredis";
import type { Logger } from "pino";
import type { ServerSettingsKeeper } from "../store.js";
import { ensureCompactHashes } from "./compact-hashes.js";

/** How often a cluster's primaries are compared with those already given the settings. */
const RECHECK_INTERVAL_MS = 5000;

export interface ServerSettingsOptions {
  /** The store's command connection: one Redis (also through Sentinel) or a Cluster. */
  readonly command: Redis | Cluster;
  readonly logger?: Logger;
  /** Bounds one command (the store's loop-aware command deadline, connections.ts). */
  readonly within: <T>(pending: Promise<T>) => Promise<T>;
}

export async function keepServerSettings(options: ServerSettingsOptions): Promise<ServerSettingsKeeper> {
  const { command, logger, within } = options;
  let stopped = false;
  /** Applies the settings over `node`; false when it could not be reached (it gets them at its next "ready"). */
  const apply = async (node: Redis): Promise<boolean> => {
    if (stopped) return true;
    try {
      await within(ensureCompactHashes(node, logger));
      return true;
    } catch (error) {
      logger?.debug({ err: error instanceof Error ? error.message : String(error) }, "could not apply the redis server settings yet");
      return false;
    }
  };

  if (!(command instanceof Cluster)) {
    // "ready" is the moment the connection takes commands again, after any reconnect or Sentinel switch.
    const onReady = (): void => void apply(command);
    command.on("ready", onReady);
    if (command.status === "ready") await apply(command);
    return {
      async stop() {
        stopped = true;
        command.off("ready", onReady);
      },
    };
  }

  /** Primaries (by address) that have the settings over their current connection. */
  const applied = new Set<string>();
  const listening = new WeakSet<Redis>();
  const reconcile = async (): Promise<void> => {
    if (stopped) return;
    const primaries = command.nodes("master");
    await Promise.all(
      primaries.map(async (node) => {
        const address = addressOf(node);
        if (!listening.has(node)) {
          listening.add(node);
          // A reconnect may be to a restarted server that forgot the settings.
          node.on("ready", () => {
            applied.delete(address);
            void reconcile();
          });
        }
        if (applied.has(address)) return;
        applied.add(address);
        if (!(await apply(node))) applied.delete(address);
      }),
    );
  };
  const onTopology = (): void => void reconcile();
  await reconcile();
  command.on("+node", onTopology);
  command.on("refresh", onTopology);
  const timer = setInterval(onTopology, RECHECK_INTERVAL_MS);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      command.off("+node", onTopology);
      command.off("refresh", onTopology);
    },
  };
}

function addressOf(node: Redis): string {
  return `${node.options.host ?? ""}:${node.options.port ?? 0}`;
}
