/**
 * The partition secret: with encryption on and a partitioned Redis layout,
 * a user's partition follows a keyed HMAC of tenant and user under this
 * secret, not the user's token. Tokens change with the primary encryption
 * key; this secret never does, so a key rotation leaves every user in their
 * partition (listing by user and MAX_SESSIONS_PER_USER see all their
 * sessions), and Redis still holds no identifier unkeyed.
 *
 * 32 random bytes, generated once, stored in Redis only sealed under the
 * keyring (`npm run reencrypt` re-seals it), one copy in every partition's
 * slot (`P Qps`, keys.ts) so that a primary that lost its data (a failover to
 * an empty replica) loses no placement: the other copies restore it.
 *
 * Created only when no copy exists and no partition's event log generation
 * does either (an unused layout, or a Redis that lost everything): a missing
 * secret over existing data is a start error, never a silent new secret that
 * would place users apart from their sessions. Concurrent first starts agree
 * through SET NX on partition 0's copy. Running processes keep it there
 * (partition-secret-keeper.ts): a start that finds data but no copy waits a
 * few of their check intervals for one before refusing.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createHmac, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { DecryptError, isSealed, type FieldBinding, type FieldCipher } from "../crypto/field-cipher.js";
import { StartError } from "../startup/start-error.js";
import { ScopedCache } from "./scoped-cache.js";

/** The copies of the secret in a store's partitions. */
export interface PartitionSecretCopies {
  /** One copy per partition. */
  readonly count: number;
  /** Each partition's copy as stored (null: absent; undefined: its partition did not answer). */
  read(): Promise<(string | null | undefined)[]>;
  /** One partition's copy as stored (null: absent; undefined: its partition did not answer). */
  readOne(partition: number): Promise<string | null | undefined>;
  /** Stores a copy in a partition unless it has one (SET NX). */
  writeIfAbsent(partition: number, sealed: string): Promise<void>;
  /** True when the layout holds data already: a partition's event log generation exists. */
  inUse(): Promise<boolean>;
  /** The name of a partition's copy, for messages. */
  keyName(partition: number): string;
}

const SECRET_BYTES = 32;
/** The associated data of the sealed secret: no tenant, no session. */
export const PARTITION_SECRET_BINDING: FieldBinding = { tenant: "", sessionId: "", field: "partition-secret" };
/** Characters of a placement kept (base64url: 132 bits; only its hash mod the partition count is ever used). */
const PLACEMENT_CHARS = 22;

/** Placements remembered (a create asks for its user's twice: its session id's partition, then the write's). */
const PLACEMENTS_CACHED = 100_000;

/** A user's placement: a keyed HMAC of tenant and user id under the partition secret. */
export class UserPlacement {
  /** A key object made once: createHmac then skips importing the raw key on every call. */
  private readonly key: KeyObject;
  private readonly known = new ScopedCache<string>(PLACEMENTS_CACHED);

  constructor(secret: Buffer) {
    this.key = createSecretKey(secret);
  }

  of(tenant: string, userId: string): string {
    const known = this.known.get(tenant, userId);
    if (known !== undefined) return known;
    const placement = createHmac("sha256", this.key).update(`${tenant}\n${userId}`).digest("base64url").slice(0, PLACEMENT_CHARS);
    this.known.set(tenant, userId, placement);
    return placement;
  }
}

/** What to do with the copies read: the secret, or why there is none. */
type Found = { secret: Buffer; sealed: string } | undefined;

/**
 * The partition secret from Redis: opened from the copies (restoring missing
 * ones), or made when the layout is unused. Throws StartError naming the key
 * when a copy does not open or the copies disagree or data exists without one.
 */
export async function openPartitionSecret(copies: PartitionSecretCopies, cipher: FieldCipher): Promise<{ secret: Buffer; sealed: string }> {
  const stored = await copies.read();
  let found = agreed(copies, cipher, stored);
  if (found === undefined) {
    const unknown = stored.filter((copy) => copy === undefined).length;
    if (unknown > 0) throw new StartError(`the partition secret could not be read: ${unknown} of ${stored.length} partitions (${copies.keyName(stored.indexOf(undefined))} ...) did not answer`);
    if (await copies.inUse()) {
      // Another process may have made it and written data since our read: its copy precedes its writes. Or Redis lost
      // its data under running processes, whose writes came first: their next check (partition-secret-keeper.ts) restores it.
      found = await awaitRestored(copies, cipher);
      if (found === undefined) {
        throw new StartError(
          `no partition secret in Redis (${copies.keyName(0)} and its copies in every partition) while the partitioned layout holds data: ` +
            "it was deleted, or the data was written by a version without it; a new one would place users apart from their existing sessions. " +
            "Run `npm run reencrypt` to make one (a user's sessions written before then are missed by listing by user and MAX_SESSIONS_PER_USER until they end)",
        );
      }
    } else {
      await copies.writeIfAbsent(0, sealNew(cipher));
      found = agreed(copies, cipher, await copies.read());
      if (found === undefined) throw new StartError(`the partition secret written to Redis (${copies.keyName(0)}) cannot be read back`);
    }
  }
  await restoreCopies(copies, found.sealed);
  return found;
}

/** How often a running process checks that Redis still holds the partition secret (partition-secret-keeper.ts). */
export const SECRET_CHECK_INTERVAL_MS = 1000;
/** How long a start waits for running processes to restore a secret gone from Redis before it refuses. */
const RESTORE_WAIT_MS = 3 * SECRET_CHECK_INTERVAL_MS;

/** The secret once some copy is present again, read every quarter interval for up to RESTORE_WAIT_MS; undefined after. */
async function awaitRestored(copies: PartitionSecretCopies, cipher: FieldCipher): Promise<Found> {
  const deadline = Date.now() + RESTORE_WAIT_MS;
  for (;;) {
    const found = agreed(copies, cipher, await copies.read());
    if (found !== undefined || Date.now() >= deadline) return found;
    await sleep(SECRET_CHECK_INTERVAL_MS / 4);
  }
}

/** A new random secret, sealed under the primary key. */
export function sealNew(cipher: FieldCipher): string {
  return cipher.seal(randomBytes(SECRET_BYTES).toString("base64url"), PARTITION_SECRET_BINDING);
}

/** Writes the sealed secret into every partition that lacks it, returning how many lacked it (best effort: a partition that fails gets it at a later check or start). */
export async function restoreCopies(copies: PartitionSecretCopies, sealed: string): Promise<number> {
  const stored = await copies.read();
  await Promise.all(stored.map((copy, i) => (copy === null ? copies.writeIfAbsent(i, sealed).catch(() => undefined) : undefined)));
  return stored.filter((copy) => copy === null).length;
}

/**
 * The secret the present copies hold (undefined: none present); StartError
 * when one is not sealed, does not open with the configured keys, or they differ.
 */
function agreed(copies: PartitionSecretCopies, cipher: FieldCipher, stored: readonly (string | null | undefined)[]): Found {
  let found: Found;
  for (const [i, copy] of stored.entries()) {
    if (copy === null || copy === undefined) continue;
    const secret = openCopy(cipher, copy, copies.keyName(i));
    if (found === undefined) found = { secret, sealed: copy };
    else if (!found.secret.equals(secret)) throw new StartError(`the partition secret's copies in Redis differ (${copies.keyName(i)} is not ${copies.keyName(stored.indexOf(found.sealed))}'s)`);
  }
  return found;
}

/** One copy opened (StartError naming its key, never its value, when it does not). */
export function openCopy(cipher: FieldCipher, sealed: string, keyName: string): Buffer {
  try {
    // Sealed always: a plaintext copy (which the migration setting would pass through) is someone else's write.
    if (!isSealed(sealed)) throw new DecryptError("not sealed");
    const secret = Buffer.from(cipher.open(sealed, PARTITION_SECRET_BINDING), "base64url");
    if (secret.length !== SECRET_BYTES) throw new DecryptError("wrong length");
    return secret;
  } catch (error) {
    if (!(error instanceof DecryptError)) throw error;
    throw new StartError(
      `the partition secret in Redis (${keyName}) does not open with ENCRYPTION_KEYS: keep the key it was sealed under configured until \`npm run reencrypt\` has finished`,
    );
  }
}
