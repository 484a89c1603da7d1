/**
 * One build's session stack as the service composes it, loaded from that
 * build's dist/ (for benches that compare two builds in one process):
 * RedisStore behind the sealing wrapper (encryption on) and a SessionManager.
 */
import { resolve } from "node:path";
import type { Logger } from "pino";

type StoreModule = typeof import("../src/store/redis/redis-store.js");
type SealedModule = typeof import("../src/store/sealed-store.js");
type CipherModule = typeof import("../src/crypto/field-cipher.js");
type KeyringModule = typeof import("../src/crypto/keyring.js");
type ManagerModule = typeof import("../src/session/session-manager.js");
type Config = import("../src/config/config.js").Config;
export type SealedStore = Awaited<ReturnType<SealedModule["openSealedStore"]>>;
export type Manager = InstanceType<ManagerModule["SessionManager"]>;

export interface BuildStack {
  /** The build's dist/src, to import more of its modules from. */
  readonly dist: string;
  readonly store: SealedStore;
  readonly manager: Manager;
  /** Only what create, the event reader and the expiry scheduler read. */
  readonly config: Config;
}

export interface BuildStackOptions {
  readonly root: string;
  readonly redisUrl: string;
  readonly keyPrefix: string;
  /** The AES key of the one keyring entry. */
  readonly key: Buffer;
  readonly logger: Logger;
  /** Event log entries kept (default 100,000). */
  readonly eventRetentionCount?: number;
}

export async function openBuildStack(options: BuildStackOptions): Promise<BuildStack> {
  const dist = resolve(options.root, "dist/src");
  const { RedisStore } = (await import(`${dist}/store/redis/redis-store.js`)) as StoreModule;
  const { openSealedStore } = (await import(`${dist}/store/sealed-store.js`)) as SealedModule;
  const { KeyedFieldCipher } = (await import(`${dist}/crypto/field-cipher.js`)) as CipherModule;
  const { Keyring } = (await import(`${dist}/crypto/keyring.js`)) as KeyringModule;
  const { SessionManager } = (await import(`${dist}/session/session-manager.js`)) as ManagerModule;
  const limits = {
    maxDataKeys: 100,
    maxDataBytes: 1 << 20,
    maxSessionsPerUser: 0,
    maxSessionsPerTenant: 0,
    maxDataSourcesPerTenant: 0,
    sessionsPerUserPolicy: "reject" as const,
    archiveRetentionMs: 86_400_000,
    expiryGraceMs: 3_600_000,
    eventRetentionCount: options.eventRetentionCount ?? 100_000,
    eventRetentionMs: 3_600_000,
  };
  const cipher = new KeyedFieldCipher(new Keyring([{ id: "k1", key: options.key }]));
  const { logger } = options;
  const store = await openSealedStore(new RedisStore({ url: options.redisUrl, keyPrefix: options.keyPrefix, limits, commandTimeoutMs: 30_000, logger }), cipher, logger);
  const config = { ttl: { defaultMs: 3_600_000, minMs: 1000, maxMs: 86_400_000 }, limits: { maxMetadataBytes: 16_384, maxDataValueBytes: 65_536 }, sweepIntervalMs: 1000 } as unknown as Config;
  const manager = new SessionManager({ store, config, cipher, logger });
  return { dist, store, manager, config };
}
