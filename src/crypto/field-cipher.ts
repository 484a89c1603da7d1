/**
 * Encryption at rest of the values callers give us: session metadata and data
 * values are sealed here before they reach the store and opened here after.
 *
 * An AEAD with a random 96-bit nonce per value: ChaCha20-Poly1305 (libsodium,
 * see chacha20-poly1305.ts) by default, or AES-256-GCM (node:crypto) with
 * ENCRYPTION_CIPHER=aes-256-gcm. Both are always read, so the setting can
 * change at any time. The associated data binds the ciphertext to its place:
 * tenant, session id and field ("metadata", or "data:" + key). A ciphertext
 * copied to another session, tenant or data key fails authentication instead
 * of decrypting there.
 *
 * Stored form: `<version>:<keyId>:<base64url(nonce ‖ ciphertext ‖ tag)>`,
 * version `e1` for AES-256-GCM under the configured key itself, `e2` for
 * ChaCha20-Poly1305 under a key derived from it (HKDF, so no key serves two
 * algorithms). Plain JSON never starts with "e", so a stored value is
 * unambiguously sealed or plain.
 * With keys, a plain value is an error (whoever can write to Redis must not
 * be able to slip one in): only the explicit migration setting
 * (ENCRYPTION_MIGRATE_PLAINTEXT, for values written before keys were
 * configured) reads them, until `npm run reencrypt` has sealed them.
 *
 * Identifiers that name keys (request id, user id, data source, data key
 * name) are stored as keyed HMACs (indexNames) and their names sealed beside
 * them under nameBinding; a record's metadata ciphertext also carries a keyed
 * tag (tag, see SealedFields.metadataTag): src/store/sealed-store.ts.
 *
 * Errors never quote the value or the key.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, timingSafeEqual } from "node:crypto";
import { aead } from "./chacha20-poly1305.js";
import { HmacSha256 } from "./hmac-sha256.js";
import { Keyring } from "./keyring.js";

/** Where a value lives: what the associated data binds it to. */
export interface FieldBinding {
  readonly tenant: string;
  readonly sessionId: string;
  /** METADATA_FIELD or dataField(key). */
  readonly field: string;
}

export const METADATA_FIELD = "metadata";

/** What an index name is bound to, so the same identifier names different keys per tenant and kind. */
export interface IndexBinding {
  readonly tenant: string;
  /** e.g. "request_id". */
  readonly kind: string;
}

export function dataField(key: string): string {
  return `data:${key}`;
}

/**
 * Where a sealed identifier (user id, data source, data key name) is bound:
 * its tenant and kind, not a session (the same sealed name may stand in a
 * counter of the tenant). The empty session id names no session (ids are UUIDs).
 */
export function nameBinding(binding: IndexBinding): FieldBinding {
  return { tenant: binding.tenant, sessionId: "", field: `name:${binding.kind}` };
}

export interface FieldCipher {
  /** True when seal encrypts (false: values are stored as given). */
  readonly encrypts: boolean;
  /**
   * The names under which an identifier that names a key (a request id) is
   * stored: keyed HMACs (HMAC-SHA256 under a key derived from each configured
   * key, base64url), so Redis never holds the identifier itself. The first is
   * the one to write (primary key); the others find what was written before a
   * rotation. Without keys: the identifier itself.
   */
  indexNames(identifier: string, binding: IndexBinding): readonly string[];
  seal(plaintext: string, binding: FieldBinding): string;
  /** The plaintext; throws DecryptError when a sealed value does not authenticate or its key is unknown. */
  open(stored: string, binding: FieldBinding): string;
  /**
   * A keyed MAC (HMAC-SHA256 under a key derived from the primary key,
   * truncated to 128 bits, `<keyId>.<base64url>`) of `message` bound to its
   * place. Whoever lacks the key cannot make one for another message.
   */
  tag(message: string, binding: FieldBinding): string;
  /** True when `tag` was made by tag() for this message and place under any configured key. */
  tagMatches(tag: string, message: string, binding: FieldBinding): boolean;
  /**
   * True when stored forms written before encryption (plaintext values,
   * records without sealed identifiers or record tag) are read: the
   * migration setting, or no encryption at all.
   */
  readonly readsLegacy: boolean;
}

export class DecryptError extends Error {
  override readonly name = "DecryptError";
}

/** The algorithms a value can be sealed with, by the setting's name. */
export type SealAlgorithm = "chacha20-poly1305" | "aes-256-gcm";
export const SEAL_ALGORITHMS: readonly SealAlgorithm[] = ["chacha20-poly1305", "aes-256-gcm"];
const GCM_PREFIX = "e1:";
const CHACHA_PREFIX = "e2:";
/** Both prefixes have this length. */
const PREFIX_CHARS = 3;
/** Most opened values remembered, and the longest sealed value remembered: at most about 8 MB (keys and plaintexts). */
const OPENED_CACHED = 2048;
const OPENED_MAX_CHARS = 2048;
/** Metadata the store writes itself, without a key (see write_archive in lua/prelude.ts). */
const BARE_METADATA = "{}";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Random bytes fetched at once for this many IVs: one call into the random source instead of one per value sealed. */
const IVS_PER_FETCH = 256;
let ivPool = Buffer.alloc(0);
let ivNext = 0;

/** A random IV never handed out before (its bytes are not reused: the pool is replaced, not refilled in place). */
function freshIv(): Buffer {
  if (ivNext + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_BYTES * IVS_PER_FETCH);
    ivNext = 0;
  }
  const iv = ivPool.subarray(ivNext, ivNext + IV_BYTES);
  ivNext += IV_BYTES;
  return iv;
}

/** True when the stored value is sealed (by any key). */
export function isSealed(stored: string): boolean {
  return stored.startsWith(CHACHA_PREFIX) || stored.startsWith(GCM_PREFIX);
}

/** The key id of a sealed value, or undefined for a plain one. */
export function sealedKeyId(stored: string): string | undefined {
  if (!isSealed(stored)) return undefined;
  const end = stored.indexOf(":", PREFIX_CHARS);
  return end < 0 ? undefined : stored.slice(PREFIX_CHARS, end);
}

/** Unambiguous encoding of the binding (JSON of an array: no separator can be forged by a key name). */
function associatedData(binding: FieldBinding): Buffer {
  return Buffer.from(JSON.stringify(["sessiond/v1", binding.tenant, binding.sessionId, binding.field]), "utf8");
}

/** A value opened here, and the place it authenticated for. */
interface OpenedValue {
  readonly tenant: string;
  readonly sessionId: string;
  readonly field: string;
  readonly plaintext: string;
}

export class KeyedFieldCipher implements FieldCipher {
  readonly encrypts = true;

  /** Per key id, the HMAC under the key derived from it for index names (never the encryption key itself). */
  private readonly indexKeys: ReadonlyMap<string, HmacSha256>;
  /** Per key id, the HMAC under the key derived from it for record tags (never the encryption key itself). */
  private readonly tagKeys: ReadonlyMap<string, HmacSha256>;
  /** Per key id, the ChaCha20-Poly1305 key derived from it. */
  private readonly chachaKeys: ReadonlyMap<string, Buffer>;
  /** Key ids, the primary's first: the order of indexNames. */
  private readonly primaryFirst: readonly string[];
  /**
   * Plaintexts of recently opened values, by ciphertext with the place each opened at: a session
   * read again and again (every GetSession opens its metadata) is decrypted
   * once. Only a value that authenticated is here; a changed ciphertext is
   * another entry.
   */
  private readonly opened = new Map<string, OpenedValue>();

  constructor(
    readonly keyring: Keyring,
    /** Read plain values as they are (migration); default: refuse them. */
    readonly acceptPlaintext = false,
    /** What seal() writes; open() reads either. */
    readonly algorithm: SealAlgorithm = "chacha20-poly1305",
  ) {
    this.chachaKeys = new Map(keyring.ids.map((id) => [id, derivedKey(keyring, id, "sessiond/seal/chacha20-poly1305/v1")]));
    this.indexKeys = derivedKeys(keyring, "sessiond/index-name/v1");
    this.tagKeys = derivedKeys(keyring, "sessiond/record-tag/v1");
    const primary = keyring.primary.id;
    this.primaryFirst = [primary, ...keyring.ids.filter((id) => id !== primary)];
  }

  get readsLegacy(): boolean {
    return this.acceptPlaintext;
  }

  tag(message: string, binding: FieldBinding): string {
    const id = this.keyring.primary.id;
    const key = this.tagKeys.get(id);
    if (key === undefined) throw new Error("the primary key has no tag key");
    return `${id}.${tagOf(key, message, binding)}`;
  }

  tagMatches(tag: string, message: string, binding: FieldBinding): boolean {
    const dot = tag.indexOf(".");
    const key = dot < 0 ? undefined : this.tagKeys.get(tag.slice(0, dot));
    if (key === undefined) return false;
    const given = Buffer.from(tag.slice(dot + 1), "base64url");
    const expected = Buffer.from(tagOf(key, message, binding), "base64url");
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  indexNames(identifier: string, binding: IndexBinding): readonly string[] {
    const message = JSON.stringify(["sessiond/v1", binding.tenant, binding.kind, identifier]);
    return this.primaryFirst.map((id) => {
      const key = this.indexKeys.get(id);
      if (key === undefined) throw new Error("a configured key has no index key");
      return key.digest(message, "base64url");
    });
  }

  /** A cipher with a random key that dies with the process (in-memory store only). */
  static ephemeral(): KeyedFieldCipher {
    return new KeyedFieldCipher(Keyring.ephemeral());
  }

  /** True when `stored` is sealed the way seal() seals now: the primary key and the configured algorithm. */
  sealedAsNow(stored: string): boolean {
    return stored.startsWith(this.algorithm === "aes-256-gcm" ? GCM_PREFIX : CHACHA_PREFIX) && sealedKeyId(stored) === this.keyring.primary.id;
  }

  seal(plaintext: string, binding: FieldBinding): string {
    return this.algorithm === "aes-256-gcm" ? this.sealGcm(plaintext, binding) : this.sealChacha(plaintext, binding);
  }

  private sealChacha(plaintext: string, binding: FieldBinding): string {
    const id = this.keyring.primary.id;
    const key = this.chachaKeys.get(id);
    if (key === undefined) throw new Error("the primary key has no sealing key");
    const message = Buffer.from(plaintext, "utf8");
    const blob = Buffer.allocUnsafe(IV_BYTES + message.length + TAG_BYTES);
    const nonce = freshIv();
    blob.set(nonce, 0);
    aead.seal(blob.subarray(IV_BYTES), message, associatedData(binding), nonce, key);
    return `${CHACHA_PREFIX}${id}:${blob.toString("base64url")}`;
  }

  private sealGcm(plaintext: string, binding: FieldBinding): string {
    const { id, key } = this.keyring.primary;
    const iv = freshIv();
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(associatedData(binding));
    const body = cipher.update(plaintext, "utf8");
    // GCM is a stream mode: final() returns no bytes (it computes the tag), but is laid out all the same.
    const rest = cipher.final();
    // iv ‖ ciphertext ‖ tag in one buffer, without the intermediate copies of Buffer.concat.
    const blob = Buffer.allocUnsafe(IV_BYTES + body.length + rest.length + TAG_BYTES);
    blob.set(iv, 0);
    blob.set(body, IV_BYTES);
    blob.set(rest, IV_BYTES + body.length);
    blob.set(cipher.getAuthTag(), IV_BYTES + body.length + rest.length);
    return `${GCM_PREFIX}${id}:${blob.toString("base64url")}`;
  }

  open(stored: string, binding: FieldBinding): string {
    if (!isSealed(stored)) {
      // The store's own empty metadata of an archive shortened under memory pressure: it carries nothing, and
      // writing it can only blank metadata, which whoever can write to Redis can do by deleting the key anyway.
      if (this.acceptPlaintext || (stored === BARE_METADATA && binding.field === METADATA_FIELD)) return stored;
      throw new DecryptError("stored value is not encrypted (plaintext is read only with ENCRYPTION_MIGRATE_PLAINTEXT=true, until npm run reencrypt)");
    }
    // The same ciphertext at the same place opens to the same plaintext (the key ring does not change while running).
    // Looked up by the ciphertext alone (a string the store hands back again and again keeps its hash): a hit counts
    // only at the place it authenticated for, anywhere else the value is decrypted, and fails, as a copied one must.
    const cacheable = stored.length <= OPENED_MAX_CHARS;
    const known = cacheable ? this.opened.get(stored) : undefined;
    if (known !== undefined && known.tenant === binding.tenant && known.sessionId === binding.sessionId && known.field === binding.field) return known.plaintext;
    const plaintext = this.decrypt(stored, binding);
    if (cacheable) {
      if (this.opened.size >= OPENED_CACHED) this.opened.clear();
      this.opened.set(stored, { tenant: binding.tenant, sessionId: binding.sessionId, field: binding.field, plaintext });
    }
    return plaintext;
  }

  private decrypt(stored: string, binding: FieldBinding): string {
    const keyId = sealedKeyId(stored);
    const key = keyId === undefined ? undefined : this.keyring.get(keyId);
    if (keyId === undefined || key === undefined) {
      throw new DecryptError(`stored ${binding.field === METADATA_FIELD ? "metadata" : "data value"} is sealed with an unknown key`);
    }
    const blob = Buffer.from(stored.slice(PREFIX_CHARS + keyId.length + 1), "base64url");
    if (blob.length < IV_BYTES + TAG_BYTES) throw new DecryptError("stored value is not a valid ciphertext");
    if (stored.startsWith(CHACHA_PREFIX)) {
      const chachaKey = this.chachaKeys.get(keyId);
      const opened = chachaKey === undefined ? undefined : aead.open(blob.subarray(IV_BYTES), associatedData(binding), blob.subarray(0, IV_BYTES), chachaKey);
      if (opened === undefined) throw new DecryptError("stored value failed to authenticate (tampered, or copied from another session or field)");
      return opened.toString("utf8");
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", key.key, blob.subarray(0, IV_BYTES));
      decipher.setAAD(associatedData(binding));
      decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
      return Buffer.concat([decipher.update(blob.subarray(IV_BYTES, blob.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch {
      // Wrong key, tampered value, or a value copied from another session or field.
      throw new DecryptError("stored value failed to authenticate (tampered, or copied from another session or field)");
    }
  }
}

const BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/** Characters of base64url that carry only the kept 16 bytes' bits (21 × 6 = 126), and the mask of the 22nd's 6-bit value: its top 2 bits (the last 2 kept), then zeros. */
const TAG_WHOLE_CHARS = 21;
const TAG_LAST_CHAR_BITS = 0b110000;

/** HKDF-SHA256 of the configured key `id`, empty salt, `info` naming the use. */
function derivedKey(keyring: Keyring, id: string, info: string): Buffer {
  return Buffer.from(hkdfSync("sha256", keyring.get(id)?.key ?? Buffer.alloc(0), Buffer.alloc(0), info, 32));
}

function derivedKeys(keyring: Keyring, info: string): ReadonlyMap<string, HmacSha256> {
  return new Map(keyring.ids.map((id) => [id, new HmacSha256(derivedKey(keyring, id, info))]));
}

/**
 * base64url of the first 16 bytes of the HMAC, cut from the base64url of all 32 (no buffer in between): the
 * first 21 characters are the same, the 22nd keeps the top 2 bits of its value.
 */
function tagOf(key: HmacSha256, message: string, binding: FieldBinding): string {
  const mac = key.digest(JSON.stringify(["sessiond/v1", binding.tenant, binding.sessionId, binding.field, message]), "base64url");
  return mac.slice(0, TAG_WHOLE_CHARS) + BASE64URL.charAt(BASE64URL.indexOf(mac.charAt(TAG_WHOLE_CHARS)) & TAG_LAST_CHAR_BITS);
}

/**
 * No encryption (ALLOW_PLAINTEXT=true). Refuses to "open" a sealed value
 * rather than hand ciphertext to a caller as if it were JSON.
 */
export const PLAINTEXT_CIPHER: FieldCipher = {
  encrypts: false,
  readsLegacy: true,
  indexNames: (identifier) => [identifier],
  tag: () => "",
  tagMatches: () => true,
  seal: (plaintext) => plaintext,
  open(stored) {
    if (isSealed(stored)) throw new DecryptError("stored value is encrypted but no encryption key is configured");
    return stored;
  },
};
