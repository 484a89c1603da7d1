/**
 * What the sealing wrapper (sealed-store.ts) does to one name or record, for
 * it and for other readers of the event log (the archive sink, `npm run
 * reencrypt`): tokens (keyed HMACs) of identifiers, their sealed names, the
 * metadata tag, and the checks that a stored record, event or data entry
 * hangs together.
 */
import { DecryptError, isSealed, METADATA_FIELD, nameBinding, type FieldCipher } from "../crypto/field-cipher.js";
import type { SessionRecord } from "../domain/model.js";
import { loggedKeyOf, type SessionGuard, type StoredEvent } from "./store.js";

export type NameKind = "user" | "data_source" | "data_key";

/** Most entries in each of SealedNames' maps (opened names and verified tags, tokens, sealed names: about 25 MB each at worst, with long names). */
const VERIFIED_CACHED = 100_000;
/** Characters of a token kept (base64url: 132 bits of the HMAC). */
const TOKEN_CHARS = 22;

/** Metadata the store writes itself without a key or tag (a shortened archive, see write_archive). */
const BARE_METADATA = "{}";

/** A stored record or event that fails a check; `problem` is our own wording, never a value. */
export class Unreadable extends Error {
  override readonly name = "Unreadable";
}

/**
 * Tokens, sealed names and the record checks, for the store wrapper and for
 * other readers of the event log (the archive sink).
 */
export class SealedNames {
  /**
   * What was opened or verified already, by its stored form: sealed names
   * and tags of a session stay the same across reads, so a snapshot storm
   * or a metrics call over many data sources pays each decryption once.
   */
  private readonly verified = new Map<string, string>();
  /** Tokens of names met recently (a watch herd or a busy user asks for the same ones), bounded like `verified`. */
  private readonly tokensOf = new Map<string, readonly string[]>();
  /**
   * The sealed form of names sealed recently, bounded like `verified`: a
   * user's or data source's sessions may all carry the same one, since they
   * carry the same token anyway (a Redis reader learns nothing new), and a
   * create then seals no name it sealed before.
   */
  private readonly sealedOf = new Map<string, string>();

  constructor(private readonly cipher: FieldCipher) {}

  /**
   * The name's tokens under every configured key, the primary's first (128
   * bits of the keyed HMAC: short key names and fields, no collision in any
   * tenant's lifetime); with the migration setting, then the name itself (stored before keys).
   */
  tokens(tenant: string, kind: NameKind, name: string): readonly string[] {
    const key = `${kind}\n${tenant}\n${name}`;
    const known = this.tokensOf.get(key);
    if (known !== undefined) return known;
    const made = this.cipher.indexNames(name, { tenant, kind }).map((t) => t.slice(0, TOKEN_CHARS));
    const tokens = this.cipher.readsLegacy && !made.includes(name) ? [...made, name] : made;
    if (this.tokensOf.size >= VERIFIED_CACHED) this.tokensOf.clear();
    this.tokensOf.set(key, tokens);
    return tokens;
  }

  token(tenant: string, kind: NameKind, name: string): string {
    return this.tokens(tenant, kind, name)[0] ?? name;
  }

  sealName(tenant: string, kind: NameKind, name: string): string {
    const key = `${kind}\n${tenant}\n${name}`;
    const known = this.sealedOf.get(key);
    if (known !== undefined) return known;
    const sealed = this.cipher.seal(name, nameBinding({ tenant, kind }));
    if (this.sealedOf.size >= VERIFIED_CACHED) this.sealedOf.clear();
    this.sealedOf.set(key, sealed);
    // Sealed here, so known to open to `name`: a record written with it (a create's reply) is served without opening it.
    this.remember(`n\n${kind}\n${tenant}\n${this.token(tenant, kind, name)}\n${sealed}`, name);
    return sealed;
  }

  /** The sealed name opened, if it hashes to the stored token (else Unreadable). */
  openName(tenant: string, kind: NameKind, sealed: string, token: string): string {
    const key = `n\n${kind}\n${tenant}\n${token}\n${sealed}`;
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    const name = this.cipher.open(sealed, nameBinding({ tenant, kind }));
    if (!this.tokens(tenant, kind, name).includes(token)) throw new Unreadable(`the sealed ${kind} does not match the record's`);
    this.remember(key, name);
    return name;
  }

  private remember(key: string, value: string): void {
    if (this.verified.size >= VERIFIED_CACHED) this.verified.clear();
    this.verified.set(key, value);
  }

  /** A name stored before identifiers were sealed: read as it is only with the migration setting. */
  legacyName(stored: string): string {
    if (!this.cipher.readsLegacy) throw new Unreadable("the record's identifiers are not sealed");
    return stored;
  }

  metadataTag(tenant: string, sessionId: string, metadata: string): string {
    const tag = this.cipher.tag(metadata, { tenant, sessionId, field: METADATA_FIELD });
    // Made here for this metadata: a record carrying both is served without computing the tag again.
    if (this.cipher.encrypts) this.remember(`t\n${tenant}\n${sessionId}\n${tag}`, metadata);
    return tag;
  }

  /** The guard with the user's tokens (the primary key's first, the others as aliases). */
  guard(tenant: string, guard: SessionGuard | undefined): SessionGuard | undefined {
    if (guard === undefined) return undefined;
    const [userId = guard.userId, ...userAliases] = this.tokens(tenant, "user", guard.userId);
    return { ...guard, userId, ...(userAliases.length === 0 ? {} : { userAliases }) };
  }

  /**
   * The record as callers know it: names opened, the metadata tag checked
   * (records and archives carry it; events never do, see event()). Throws
   * Unreadable.
   */
  check(record: SessionRecord, withTag = true): SessionRecord {
    const { sealed, tenant } = record;
    const userId = sealed?.user === undefined ? this.legacyName(record.userId) : this.openName(tenant, "user", sealed.user, record.userId);
    const dataSource = sealed?.dataSource === undefined ? this.legacyName(record.dataSource) : this.openName(tenant, "data_source", sealed.dataSource, record.dataSource);
    if (withTag && !this.tagged(record)) throw new Unreadable("the stored metadata is not the one last written to this record");
    // Field by field (no spread): this runs for every record a listing or snapshot serves.
    return {
      tenant,
      sessionId: record.sessionId,
      userId,
      dataSource,
      accessLevel: record.accessLevel,
      status: record.status,
      createTime: record.createTime,
      expireTime: record.expireTime,
      lastAccessTime: record.lastAccessTime,
      endTime: record.endTime,
      metadata: record.metadata,
      version: record.version,
    };
  }

  private tagged(record: SessionRecord): boolean {
    const tag = record.sealed?.metadataTag;
    if (tag === undefined) return record.metadata === BARE_METADATA || this.cipher.readsLegacy;
    const key = `t\n${record.tenant}\n${record.sessionId}\n${tag}`;
    if (this.verified.get(key) === record.metadata) return true;
    if (!this.cipher.tagMatches(tag, record.metadata, { tenant: record.tenant, sessionId: record.sessionId, field: METADATA_FIELD })) return false;
    this.remember(key, record.metadata);
    return true;
  }

  /** The event with its names opened (throws when they do not open). Events carry no metadata tag. */
  event(event: StoredEvent): StoredEvent {
    const { tenant } = event.session;
    // Sorted by name, as the log sorts plain names (it sorted the sealed ones).
    const dataKeys = event.dataKeys.map((k) => (isSealed(k) ? this.cipher.open(k, nameBinding({ tenant, kind: "data_key" })) : this.legacyName(k))).sort();
    return { ...event, session: this.check(event.session, false), dataKeys };
  }

  /**
   * A data entry as stored under `token` (see SealedStore.setData): the key
   * name, which must hash to the token, and the value. An entry written
   * before key names were sealed reads only with the migration setting.
   */
  dataEntry(tenant: string, token: string, stored: string): { name: string; value: string } {
    const sealedName = loggedKeyOf("", stored);
    if (sealedName === "") return { name: this.legacyName(token), value: stored };
    return { name: this.openName(tenant, "data_key", sealedName, token), value: stored.slice(sealedName.length + 1) };
  }
}


/** Our own wording of why a stored form was refused, never a value. */
export function problemOf(error: unknown): string {
  if (error instanceof Unreadable) return error.message;
  if (error instanceof DecryptError) return "a sealed name failed to decrypt";
  return "unreadable";
}
