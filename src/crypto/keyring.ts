/**
 * The encryption keys of the service: AES-256 keys, each with a short id that
 * is written into every ciphertext, so that a value stays readable after the
 * primary key changes (rotation) until `npm run reencrypt` rewrote it.
 *
 * Text form (ENCRYPTION_KEYS, or the contents of ENCRYPTION_KEYS_FILE):
 * `id:base64key` entries separated by commas or newlines; the FIRST entry is
 * the primary key (used for every new write), the others are only read.
 * Generate a key with `openssl rand -base64 32`.
 */
import { randomBytes } from "node:crypto";

export interface EncryptionKey {
  /** 1-32 letters, digits, '_' or '-'; never secret (it is stored in every ciphertext). */
  readonly id: string;
  /** 32 bytes. */
  readonly key: Buffer;
}

export class KeyringError extends Error {
  override readonly name = "KeyringError";
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const KEY_BYTES = 32;

export class Keyring {
  readonly primary: EncryptionKey;
  private readonly byId: ReadonlyMap<string, EncryptionKey>;

  constructor(keys: readonly EncryptionKey[]) {
    const [primary] = keys;
    if (primary === undefined) throw new KeyringError("no encryption key given");
    const byId = new Map<string, EncryptionKey>();
    // Entries are named by position, never by id: a swapped or split entry puts key material where the id belongs.
    for (const [i, k] of keys.entries()) {
      if (!KEY_ID.test(k.id)) throw new KeyringError(`entry ${i + 1}: the id must be 1-32 letters, digits, '_' or '-' (entries are id:base64key)`);
      if (k.key.length !== KEY_BYTES) throw new KeyringError(`entry ${i + 1}: the key must be ${KEY_BYTES} bytes (base64 of 32 random bytes), not ${k.key.length}`);
      if (byId.has(k.id)) throw new KeyringError(`entry ${i + 1}: its id is given twice`);
      byId.set(k.id, k);
    }
    this.primary = primary;
    this.byId = byId;
  }

  get(id: string): EncryptionKey | undefined {
    return this.byId.get(id);
  }

  get ids(): string[] {
    return [...this.byId.keys()];
  }

  /** A random key that lives as long as the process: for the in-memory store, whose data dies with it anyway. */
  static ephemeral(): Keyring {
    return new Keyring([{ id: "ephemeral", key: randomBytes(KEY_BYTES) }]);
  }
}

/**
 * Parses the text form. Error messages name the entry's position, never its
 * id or key material.
 */
export function parseKeyring(text: string): Keyring {
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e !== "" && !e.startsWith("#"));
  const keys = entries.map((entry, i): EncryptionKey => {
    const colon = entry.indexOf(":");
    if (colon <= 0) throw new KeyringError(`entry ${i + 1} must be id:base64key`);
    const id = entry.slice(0, colon);
    // Messages name an entry by position until its id is known to be an id, not a misplaced key.
    if (!KEY_ID.test(id)) throw new KeyringError(`entry ${i + 1}: the id before ':' must be 1-32 letters, digits, '_' or '-' (entries are id:base64key)`);
    const material = entry.slice(colon + 1).trim();
    if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(material)) throw new KeyringError(`entry ${i + 1}: the key is not base64`);
    return { id, key: Buffer.from(material, "base64") };
  });
  return new Keyring(keys);
}
