/**
 * The partition secret's copies (src/store/partition-secret.ts) in a
 * partitioned Redis layout: one key per partition (`P Qps`, keys.ts), each in
 * its partition's slot, read and written one key per command (so on a
 * cluster each goes to its slot's primary).
 */
import type { Cluster, Redis } from "ioredis";
import type { PartitionSecretCopies } from "../partition-secret.js";
import { generationKey, partitionSecretKey, type Partitioning } from "./keys.js";

/** How a command is sent (the store's: waits for its connection, with its deadline). */
type Send = <T>(command: () => Promise<T>) => Promise<T>;

/** The copies under a key prefix; undefined with one partition (nothing is placed by user then). */
export function redisPartitionSecretCopies(
  redis: Redis | Cluster,
  prefix: string,
  partitions: Partitioning,
  send: Send = (command) => command(),
): PartitionSecretCopies | undefined {
  if (partitions.count === 1) return undefined;
  const keys = partitions.tags.map((tag) => partitionSecretKey(prefix, tag));
  const generations = partitions.tags.map((tag) => generationKey(prefix, tag));
  return {
    count: keys.length,
    // A partition whose primary does not answer is unknown (undefined), not absent: the others may hold the secret.
    read: () => Promise.all(keys.map((key) => send(() => redis.get(key)).catch(() => undefined))),
    readOne: (partition) => send(() => redis.get(keys[partition] as string)).catch(() => undefined),
    writeIfAbsent: async (partition, sealed) => {
      await send(() => redis.set(keys[partition] as string, sealed, "NX"));
    },
    inUse: async () => (await Promise.all(generations.map((key) => send(() => redis.exists(key))))).some((n) => n > 0),
    keyName: (partition) => keys[partition] as string,
  };
}
