/**
 * The sealing wrapper (src/store/sealed-store.ts) over both backends: the
 * shared conformance suites through it (identifiers as keyed HMACs, names
 * sealed beside them behave exactly like plain ones), with a keyring that
 * has a rotated key in it so that every lookup also meets its aliases.
 */
import { AesGcmFieldCipher } from "../src/crypto/field-cipher.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { SealedStore } from "../src/store/sealed-store.js";
import { CONFORMANCE_LIMITS, runStoreConformance } from "./conformance/store-conformance.js";
import { runGuardConformance } from "./conformance/guard-conformance.js";
import { useRedisServer } from "./support/redis-server.js";

const KEYS = `k2:${Buffer.alloc(32, 2).toString("base64")},k1:${Buffer.alloc(32, 1).toString("base64")}`;
const cipher = new AesGcmFieldCipher(parseKeyring(KEYS));

const openMemory = async (): Promise<{ store: SealedStore; cleanup: () => Promise<void> }> => {
  const store = new SealedStore(new MemoryStore({ limits: CONFORMANCE_LIMITS }), cipher);
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("sealed memory", openMemory);
runGuardConformance("sealed memory", openMemory);

const server = useRedisServer();
const openRedis = async (): Promise<{ store: SealedStore; cleanup: () => Promise<void> }> => {
  await server.raw.flushall();
  const store = new SealedStore(new RedisStore({ url: server.url, keyPrefix: "sdsealed:", limits: CONFORMANCE_LIMITS, commandTimeoutMs: 2000 }), cipher);
  return { store, cleanup: () => store.dispose() };
};
runStoreConformance("sealed redis", openRedis);
runGuardConformance("sealed redis", openRedis);
