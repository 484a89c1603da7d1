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
import { ScopedCache } from "./scoped-cache.js";

export type NameKind = "user" | "data_source" | "data_key";

/** Most entries in each of SealedNames' caches (names' forms per kind, opened names, verified tags; names are short, metadata is bounded apart below). */
const VERIFIED_CACHED = 100_000;
/**
 * Most metadata characters the verified-tag cache holds in all: each entry
 * keeps the metadata it was verified for, which may be MAX_METADATA_BYTES
 * long, so a count alone would not bound its memory.
 */
const VERIFIED_TAG_CHARS = 8 * 1024 * 1024;
/** Characters of a token kept (base64url: 132 bits of the HMAC). */
const TOKEN_CHARS = 22;

/** Metadata the store writes itself without a key or tag (a shortened archive, see write_archive). */
const BARE_METADATA = "{}";

/** A stored record or event that fails a check; `problem` is our own wording, never a value. */
export class Unreadable extends Error {
  override readonly name = "Unreadable";
}

/** A name's forms under the configured keys, made once per tenant and kind. */
interface NameForms {
  readonly tokens: readonly string[];
  /** The name with its primary token and sealed form, once sealName made one. */
  sent?: SentName;
}

/** What a sealed name opened to, and where it was checked: a hit must match all of it. */
interface OpenedName {
  readonly kind: NameKind;
  readonly tenant: string;
  readonly token: string;
  readonly name: string;
}

/** The place and metadata a metadata tag was verified for: a hit must match all of it. */
interface VerifiedTag {
  readonly tenant: string;
  readonly sessionId: string;
  readonly metadata: string;
}

/** A name as a write sent it: the name, its token and its sealed form. */
export interface SentName {
  readonly name: string;
  readonly token: string;
  readonly sealed: string;
}

/**
 * What a write (create, update) sent to the store for one session: a reply
 * carrying exactly these forms at the same place is known good without a
 * lookup or a MAC (see check).
 */
export interface WrittenForms {
  readonly tenant: string;
  readonly sessionId: string;
  readonly user?: SentName;
  readonly dataSource?: SentName;
  /** The metadata written and the tag sent with it. */
  readonly metadata?: { readonly text: string; readonly tag: string };
}

function bounded<K, V>(map: Map<K, V>, key: K, value: V): void {
  if (map.size >= VERIFIED_CACHED && !map.has(key)) map.clear();
  map.set(key, value);
}

/**
 * Tokens, sealed names and the record checks, for the store wrapper and for
 * other readers of the event log (the archive sink).
 */
export class SealedNames {
  /**
   * Per kind, by tenant and name: its tokens, and its sealed form. A user's
   * or data source's sessions may all carry the same sealed form, since they
   * carry the same token anyway (a Redis reader learns nothing new), and a
   * create then seals no name it sealed before.
   */
  private readonly forms: Readonly<Record<NameKind, ScopedCache<NameForms>>> = {
    user: new ScopedCache(VERIFIED_CACHED),
    data_source: new ScopedCache(VERIFIED_CACHED),
    data_key: new ScopedCache(VERIFIED_CACHED),
  };
  /**
   * Sealed names opened or made here, by their sealed text: a session's names
   * stay the same across reads, so a snapshot storm, the event reader or a
   * metrics call over many data sources pays each decryption once.
   */
  private readonly opened = new Map<string, OpenedName>();
  /** Metadata tags verified or made here, by the tag. */
  private readonly verifiedTags = new Map<string, VerifiedTag>();
  /** Metadata characters held by verifiedTags. */
  private verifiedChars = 0;

  constructor(private readonly cipher: FieldCipher) {}

  private formsOf(tenant: string, kind: NameKind, name: string): NameForms {
    const cache = this.forms[kind];
    const known = cache.get(tenant, name);
    if (known !== undefined) return known;
    const made = this.cipher.indexNames(name, { tenant, kind }).map((t) => t.slice(0, TOKEN_CHARS));
    const forms: NameForms = { tokens: this.cipher.readsLegacy && !made.includes(name) ? [...made, name] : made };
    cache.set(tenant, name, forms);
    return forms;
  }

  /**
   * The name's tokens under every configured key, the primary's first (128
   * bits of the keyed HMAC: short key names and fields, no collision in any
   * tenant's lifetime); with the migration setting, then the name itself (stored before keys).
   */
  tokens(tenant: string, kind: NameKind, name: string): readonly string[] {
    return this.formsOf(tenant, kind, name).tokens;
  }

  token(tenant: string, kind: NameKind, name: string): string {
    return this.formsOf(tenant, kind, name).tokens[0] ?? name;
  }

  sealName(tenant: string, kind: NameKind, name: string): string {
    return this.sent(tenant, kind, name).sealed;
  }

  /** The name with its primary token and sealed form, as a write sends it (see WrittenForms). */
  sent(tenant: string, kind: NameKind, name: string): SentName {
    const forms = this.formsOf(tenant, kind, name);
    if (forms.sent !== undefined) return forms.sent;
    const sent: SentName = { name, token: forms.tokens[0] ?? name, sealed: this.cipher.seal(name, nameBinding({ tenant, kind })) };
    forms.sent = sent;
    // Sealed here, so known to open to `name`: a record or event written with it is served without opening it.
    bounded(this.opened, sent.sealed, { kind, tenant, token: sent.token, name });
    return sent;
  }

  /** The sealed name opened, if it hashes to the stored token (else Unreadable). */
  openName(tenant: string, kind: NameKind, sealed: string, token: string): string {
    const known = this.opened.get(sealed);
    if (known !== undefined && known.token === token && known.kind === kind && known.tenant === tenant) return known.name;
    const name = this.cipher.open(sealed, nameBinding({ tenant, kind }));
    if (!this.tokens(tenant, kind, name).includes(token)) throw new Unreadable(`the sealed ${kind} does not match the record's`);
    bounded(this.opened, sealed, { kind, tenant, token, name });
    return name;
  }

  /** A name stored before identifiers were sealed: read as it is only with the migration setting. */
  legacyName(stored: string): string {
    if (!this.cipher.readsLegacy) throw new Unreadable("the record's identifiers are not sealed");
    return stored;
  }

  /** The tag a record with this metadata carries (not remembered: check() compares the reply of the write that sent it with it directly). */
  metadataTag(tenant: string, sessionId: string, metadata: string): string {
    return this.cipher.tag(metadata, { tenant, sessionId, field: METADATA_FIELD });
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
   * Unreadable. `written`: what the write that returned the record sent;
   * forms the record carries exactly as sent (same tenant and session) need
   * no check, since they were made here; any other form (a request id that
   * matched an earlier session, a data source whose sealed name the store
   * kept from an earlier write) is checked as always.
   */
  check(record: SessionRecord, withTag = true, written?: WrittenForms): SessionRecord {
    const { sealed, tenant } = record;
    const sent = written !== undefined && written.tenant === tenant && written.sessionId === record.sessionId ? written : undefined;
    const userId =
      sealed?.user === undefined
        ? this.legacyName(record.userId)
        : (asSent(sent?.user, sealed.user, record.userId) ?? this.openName(tenant, "user", sealed.user, record.userId));
    const dataSource =
      sealed?.dataSource === undefined
        ? this.legacyName(record.dataSource)
        : (asSent(sent?.dataSource, sealed.dataSource, record.dataSource) ?? this.openName(tenant, "data_source", sealed.dataSource, record.dataSource));
    if (withTag && !taggedAsSent(record, sent?.metadata) && !this.tagged(record)) throw new Unreadable("the stored metadata is not the one last written to this record");
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
    const known = this.verifiedTags.get(tag);
    if (known !== undefined && known.metadata === record.metadata && known.sessionId === record.sessionId && known.tenant === record.tenant) return true;
    if (!this.cipher.tagMatches(tag, record.metadata, { tenant: record.tenant, sessionId: record.sessionId, field: METADATA_FIELD })) return false;
    this.rememberTag(tag, { tenant: record.tenant, sessionId: record.sessionId, metadata: record.metadata });
    return true;
  }

  /** Keeps a verified tag within both bounds (entries and metadata characters); full, the cache starts over. */
  private rememberTag(tag: string, verified: VerifiedTag): void {
    const size = verified.metadata.length;
    if (size > VERIFIED_TAG_CHARS) return;
    const previous = this.verifiedTags.get(tag);
    if (previous !== undefined) this.verifiedChars -= previous.metadata.length;
    else if (this.verifiedTags.size >= VERIFIED_CACHED || this.verifiedChars + size > VERIFIED_TAG_CHARS) {
      this.verifiedTags.clear();
      this.verifiedChars = 0;
    }
    this.verifiedTags.set(tag, verified);
    this.verifiedChars += size;
  }

  /** Entries and metadata characters the verified-tag cache holds (for the bound's test). */
  get verifiedTagLoad(): { readonly entries: number; readonly chars: number } {
    return { entries: this.verifiedTags.size, chars: this.verifiedChars };
  }

  /** The event with its names opened (throws when they do not open). Events carry no metadata tag. */
  event(event: StoredEvent): StoredEvent {
    const { tenant } = event.session;
    // Sorted by name, as the log sorts plain names (it sorted the sealed ones).
    const dataKeys =
      event.dataKeys.length === 0
        ? event.dataKeys
        : event.dataKeys.map((k) => (isSealed(k) ? this.cipher.open(k, nameBinding({ tenant, kind: "data_key" })) : this.legacyName(k))).sort();
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


/** The sent name, when the record carries exactly its sealed form and token. */
function asSent(sent: SentName | undefined, sealed: string, token: string): string | undefined {
  return sent !== undefined && sent.sealed === sealed && sent.token === token ? sent.name : undefined;
}

/** True when the record carries exactly the metadata and tag sent. */
function taggedAsSent(record: SessionRecord, sent: WrittenForms["metadata"]): boolean {
  return sent !== undefined && record.sealed?.metadataTag === sent.tag && record.metadata === sent.text;
}

/** Our own wording of why a stored form was refused, never a value. */
export function problemOf(error: unknown): string {
  if (error instanceof Unreadable) return error.message;
  if (error instanceof DecryptError) return "a sealed name failed to decrypt";
  return "unreadable";
}
