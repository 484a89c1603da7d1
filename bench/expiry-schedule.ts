/**
 * Load for the expiry benchmarks: sessions written straight into Redis with
 * the store's own create script (RedisStore, so the same keys, indexes, due
 * queue and events as a CreateSession), each with the TTL that makes it due at
 * its slot, `rate` slots per second for `seconds`. Each is created between
 * minLeadMs and leadMs before its slot, so the live probe set stays about
 * rate × leadMs and the service's CPU goes to expiring, not to creating.
 *
 * Creating through the gRPC port instead made the bench the bottleneck on a
 * loaded 2-core machine (a few hundred creates/s): the expirations then came
 * at that rate, not at the one under test.
 *
 * Also the fast bulk fill of background sessions (fill): many store calls in
 * flight on one connection, which ioredis pipelines.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { KeyedFieldCipher, METADATA_FIELD } from "../src/crypto/field-cipher.js";
import { SealedStore } from "../src/store/sealed-store.js";
import { parseKeyring } from "../src/crypto/keyring.js";
import type { SessionRecord } from "../src/domain/model.js";
import type { CreateSessionInput, SessionStore } from "../src/store/store.js";

export type ProbeSession = Omit<CreateSessionInput, "ttlMs">;

export interface ScheduleOptions {
  readonly store: Pick<SessionStore, "create">;
  /** Expirations per second. */
  readonly rate: number;
  readonly seconds: number;
  /** The i-th session to create (0-based). */
  readonly session: (i: number) => ProbeSession;
  /** Called with each created session (its expireTime is its slot). */
  readonly onCreated?: (record: SessionRecord) => void | Promise<void>;
  /** Longest and shortest time a session is created before its slot, ms (defaults 5000 / 500). */
  readonly leadMs?: number;
  readonly minLeadMs?: number;
  /** Creates in flight (default 64). */
  readonly concurrency?: number;
}

export interface ScheduleResult {
  /** Slot of the first session (epoch ms, this machine's clock) and the end of the last second. */
  readonly windowStart: number;
  readonly windowEnd: number;
  readonly created: number;
  readonly failed: number;
  readonly firstFailure?: string;
  /** Created less than minLeadMs before their slot: the machine could not keep the rate. */
  readonly late: number;
  /** Creates per second actually achieved over the creating time. */
  readonly createRate: number;
}

/** Creates the schedule and resolves when the last session is created (about leadMs before the window ends). */
export async function scheduleExpiries(options: ScheduleOptions): Promise<ScheduleResult> {
  const { store, rate, seconds, session, onCreated } = options;
  const leadMs = options.leadMs ?? 5000;
  const minLeadMs = options.minLeadMs ?? 500;
  const total = Math.round(rate * seconds);
  const windowStart = Date.now() + leadMs;
  let next = 0;
  let created = 0;
  let failed = 0;
  let late = 0;
  let firstFailure: string | undefined;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: options.concurrency ?? 64 }, async () => {
      while (next < total) {
        const i = next++;
        const due = windowStart + Math.floor((i * 1000) / rate);
        const wait = due - leadMs - Date.now();
        if (wait > 0) await sleep(wait);
        const ttlMs = due - Date.now();
        if (ttlMs < minLeadMs) late += 1;
        try {
          const { session: record } = await store.create({ ...session(i), ttlMs: Math.max(1, ttlMs) });
          created += 1;
          await onCreated?.(record);
        } catch (error) {
          failed += 1;
          firstFailure ??= error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        }
      }
    }),
  );
  const result = { windowStart, windowEnd: windowStart + seconds * 1000, created, failed, late, createRate: (created / Math.max(1, Date.now() - started)) * 1000 };
  return firstFailure === undefined ? result : { ...result, firstFailure };
}

/** Creates sessions from..to-1 (session(i) each) with `concurrency` store calls in flight. */
export async function fill(store: Pick<SessionStore, "create">, from: number, to: number, session: (i: number) => CreateSessionInput, concurrency = 256): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < to) await store.create(session(next++));
    }),
  );
}

/**
 * ENCRYPTION_KEYS for a bench's service, and the metadata its sessions carry
 * when the bench writes them into Redis itself: sealed with that key and bound
 * to the session, as the service would seal it (it refuses plaintext when it
 * has keys).
 */
export class BenchSealer {
  private readonly cipher: KeyedFieldCipher;

  /** `keys`: ENCRYPTION_KEYS text to share (another process's sealer); default a fresh key. */
  constructor(readonly keys = `bench:${randomBytes(32).toString("base64")}`) {
    this.cipher = new KeyedFieldCipher(parseKeyring(keys));
  }

  /**
   * The store as the service with these keys sees it (src/store/sealed-store.ts): user ids and data sources
   * become keyed tokens with their names sealed beside them, metadata gets its tag.
   */
  wrap(store: SessionStore): SessionStore {
    return new SealedStore(store, this.cipher);
  }

  /** A fresh session id and its sealed metadata. */
  sealed(tenant: string, metadata: string): { sessionId: string; metadata: string } {
    const sessionId = randomUUID();
    return { sessionId, metadata: this.cipher.seal(metadata, { tenant, sessionId, field: METADATA_FIELD }) };
  }
}
