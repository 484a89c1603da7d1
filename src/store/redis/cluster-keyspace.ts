/**
 * Keyspace notifications on a Redis Cluster: each node publishes only the
 * expiries of its own keys, so every primary gets its own subscriber
 * (keyspace-expiry.ts does the work per node). The set of primaries is
 * reconciled on every topology change ioredis reports (+node, -node, a
 * refreshed slot map after a failover or a reshard) and every
 * RECONCILE_INTERVAL_MS, so a promoted replica is followed. Nothing depends on
 * the delivery: the expiry scheduler's due queues are the clock, these
 * notifications only make an expiry happen sooner.
 */
import { Redis, type Cluster } from "ioredis";
import type { Logger } from "pino";
import type { DueWatch } from "../store.js";
import { watchShadowKeyExpiry } from "./keyspace-expiry.js";

/** How often the subscribed primaries are compared with the cluster's, besides on topology events. */
const RECONCILE_INTERVAL_MS = 5000;

export interface ClusterKeyspaceOptions {
  readonly cluster: Cluster;
  readonly keyPrefix: string;
  readonly onDue: (tenant: string, sessionId: string) => void;
  readonly logger?: Logger;
  /** Bounds one command (the store's loop-aware command deadline, connections.ts). */
  readonly within: <T>(pending: Promise<T>) => Promise<T>;
}

export async function watchClusterShadowKeyExpiry(options: ClusterKeyspaceOptions): Promise<DueWatch> {
  const { cluster, keyPrefix, onDue, logger, within } = options;
  /** address → the watch of that primary (undefined while it is being opened). */
  const watches = new Map<string, DueWatch | undefined>();
  let stopped = false;

  const open = async (node: Redis): Promise<void> => {
    const address = addressOf(node);
    watches.set(address, undefined);
    const subscriber = new Redis({
      ...node.options,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: false,
      lazyConnect: false,
    });
    subscriber.on("error", () => {
      // It reconnects by itself; reconciling drops it once its node is no longer a primary.
    });
    try {
      const watch = await watchShadowKeyExpiry({ command: node, subscriber, keyPrefix, db: 0, onDue, within, ...(logger === undefined ? {} : { logger }) });
      if (stopped || !watches.has(address)) {
        await watch.stop();
        return;
      }
      watches.set(address, watch);
    } catch (error) {
      watches.delete(address);
      subscriber.disconnect();
      throw error;
    }
  };

  const reconcile = async (): Promise<void> => {
    if (stopped) return;
    const primaries = new Map(cluster.nodes("master").map((node) => [addressOf(node), node]));
    for (const [address, watch] of [...watches]) {
      if (primaries.has(address)) continue;
      watches.delete(address);
      await watch?.stop();
    }
    const opening: Promise<void>[] = [];
    for (const [address, node] of primaries) {
      if (!watches.has(address)) opening.push(open(node));
    }
    await Promise.all(opening);
  };

  const onTopology = (): void => {
    reconcile().catch((error: unknown) => {
      // A node that is down right now: the next change or the timer tries again; the due queues cover the gap.
      logger?.debug({ err: error instanceof Error ? error.message : String(error) }, "keyspace subscription of a cluster node failed");
    });
  };
  await reconcile();
  cluster.on("+node", onTopology);
  cluster.on("-node", onTopology);
  cluster.on("refresh", onTopology);
  const timer = setInterval(onTopology, RECONCILE_INTERVAL_MS);
  timer.unref();

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      cluster.off("+node", onTopology);
      cluster.off("-node", onTopology);
      cluster.off("refresh", onTopology);
      const all = [...watches.values()];
      watches.clear();
      await Promise.all(all.map((w) => w?.stop()));
    },
  };
}

function addressOf(node: Redis): string {
  return `${node.options.host ?? ""}:${node.options.port ?? 0}`;
}
