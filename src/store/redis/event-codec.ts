/**
 * Decodes event-log stream entries (written by emit() in lua/prelude.ts) into
 * StoredEvents. XRANGE inside read_events and XREAD on the tail connection
 * return entries in the same shape: [id, [field, value, field, value, ...]].
 *
 * Two forms of the fields decode alike. The named form: one field per value
 * (k, T, i, ... as emit() lists them). The packed form: the same values in
 * one field PACKED_FIELD, in PACKED_ORDER, joined by PACKED_SEPARATOR, then
 * the generation field g as in the named form. Why the packed form: every
 * process's event reader reads every entry of the log, and the Redis client
 * decodes each reply string on its own, so an entry of one value costs the
 * reader a fraction of one of fifteen (and Redis fewer reply strings to
 * write). Readers take both forms before any writer writes the packed one, so
 * processes of either version can share a log.
 */
import type { AccessLevel, SessionRecord, SessionStatus } from "../../domain/model.js";
import { eventIdTime } from "../event-id.js";
import { SESSION_EVENT_TYPES, type SessionEventType, type StoredEvent, type TailEntry } from "../store.js";
import { decodedEntry } from "../tail-entry.js";
import type { UnreadableEntry } from "../unreadable.js";
import { decodeTenant } from "./keys.js";
import { sealedFields } from "./record-codec.js";

const LEVELS: ReadonlySet<string> = new Set<AccessLevel>(["read", "write", "admin"]);
const TYPES: ReadonlySet<string> = new Set<string>(SESSION_EVENT_TYPES);

/** The field of a packed entry that holds its values. */
export const PACKED_FIELD = "r";
/**
 * What joins the values of a packed entry: the ASCII unit separator, which no
 * value holds (names refuse control characters, JSON escapes them, sealed
 * forms and numbers are printable).
 */
export const PACKED_SEPARATOR = "\u001f";
/** The names of the values of a packed entry, in order (the named form's fields). */
export const PACKED_ORDER = ["k", "T", "i", "u", "d", "l", "c", "e", "a", "t", "m", "v", "x", "U", "D"] as const;

/** One raw entry as ioredis returns it. */
export type RawStreamEntry = [id: string, fields: string[]];

function malformed(what: string): Error {
  return new Error(`malformed event log entry from redis (${what})`);
}

function int(value: string | undefined, name: string): number {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n)) throw malformed(`field ${name}`);
  return n;
}

function text(value: string | undefined, name: string): string {
  if (value === undefined) throw malformed(`field ${name} missing`);
  return value;
}

function sessionIdOf(id: string): string {
  if (!SESSION_ID.test(id)) throw malformed("session id");
  return id;
}

/** The last tenant decoded: consecutive entries are mostly of one tenant. */
let lastEncodedTenant: string | undefined;
let lastTenant = "";

function tenantOf(encoded: string): string {
  if (encoded !== lastEncodedTenant) {
    lastTenant = decodeTenant(encoded);
    lastEncodedTenant = encoded;
  }
  return lastTenant;
}

function statusOf(type: SessionEventType): SessionStatus {
  return type === "closed" || type === "expired" ? type : "active";
}

/** The values of a packed entry, or undefined when it does not hold exactly PACKED_ORDER's count. */
function packedValues(packed: string | undefined): string[] | undefined {
  if (typeof packed !== "string") return undefined;
  const values = packed.split(PACKED_SEPARATOR);
  return values.length === PACKED_ORDER.length ? values : undefined;
}

export function decodeStreamEntry(entry: unknown): StoredEvent {
  if (!Array.isArray(entry) || typeof entry[0] !== "string" || !Array.isArray(entry[1])) throw malformed("shape");
  const [id, flat] = entry as RawStreamEntry;
  // Fields by name into locals (the event reader decodes every entry of the log: no Map per entry); a repeated field's last value counts.
  let k, T, i, u, d, l, c, e, a, t, m, v, x, U, D: string | undefined;
  if (flat[0] === PACKED_FIELD) {
    const values = packedValues(flat[1]);
    if (values === undefined) throw malformed("packed values");
    [k, T, i, u, d, l, c, e, a, t, m, v, x, U, D] = values;
  } else {
    for (let n = 0; n + 1 < flat.length; n += 2) {
      const value = flat[n + 1] as string;
      switch (flat[n]) {
        case "k": k = value; break;
        case "T": T = value; break;
        case "i": i = value; break;
        case "u": u = value; break;
        case "d": d = value; break;
        case "l": l = value; break;
        case "c": c = value; break;
        case "e": e = value; break;
        case "a": a = value; break;
        case "t": t = value; break;
        case "m": m = value; break;
        case "v": v = value; break;
        case "x": x = value; break;
        case "U": U = value; break;
        case "D": D = value; break;
      }
    }
  }
  const type = text(k, "k");
  const level = text(l, "l");
  if (!TYPES.has(type) || !LEVELS.has(level)) throw malformed("kind or level");
  const kind = type as SessionEventType;
  const session: SessionRecord = {
    tenant: tenantOf(text(T, "T")),
    sessionId: sessionIdOf(text(i, "i")),
    userId: text(u, "u"),
    dataSource: text(d, "d"),
    accessLevel: level as AccessLevel,
    status: statusOf(kind),
    createTime: int(c, "c"),
    expireTime: int(e, "e"),
    lastAccessTime: int(a, "a"),
    endTime: int(t, "t"),
    metadata: text(m, "m"),
    version: int(v, "v"),
    // Entries written before sealed identifiers existed have neither field.
    ...sealedFields(U ?? "", D ?? "", ""),
  };
  const dataKeys = x === undefined || x === "" ? [] : (JSON.parse(x) as unknown);
  if (!Array.isArray(dataKeys) || !dataKeys.every((key) => typeof key === "string")) throw malformed("data keys");
  return { id, type: kind, time: eventIdTime(id), session, dataKeys };
}

/** One batch of log entries: the events that decode, those that do not, and the id of the last entry of either kind. */
export interface DecodedBatch {
  readonly events: StoredEvent[];
  readonly unreadable: UnreadableEntry[];
  /** The last entry's id (undefined for an empty batch): where the next read starts, past unreadable entries too. */
  readonly lastId: string | undefined;
  /** Entries in the batch, readable or not (a short batch means the log's end). */
  readonly size: number;
}

const EVENT_ID = /^\d{1,16}-\d{1,16}$/;

/**
 * Decodes entry by entry: an entry that does not decode is reported, with the
 * tenant and session it names when those fields read, and skipped. Only a
 * reply that is not a list of entries at all throws (then Redis itself is
 * broken).
 */
export function decodeStreamBatch(entries: unknown): DecodedBatch {
  const { decoded, ...rest } = decodeEach(entries, (_id, entry) => decodeStreamEntry(entry));
  return { events: decoded, ...rest };
}

/** Entry by entry with `decode`: an entry it throws on is unreadable (attributed, skipped); one without an id fails the batch. */
function decodeEach<T>(entries: unknown, decode: (id: string, entry: RawStreamEntry) => T): { decoded: T[]; unreadable: UnreadableEntry[]; lastId: string | undefined; size: number } {
  if (!Array.isArray(entries)) throw malformed("entries");
  const decoded: T[] = [];
  const unreadable: UnreadableEntry[] = [];
  let lastId: string | undefined;
  for (const entry of entries as unknown[]) {
    const id = Array.isArray(entry) && typeof entry[0] === "string" && EVENT_ID.test(entry[0]) ? entry[0] : undefined;
    if (id === undefined) throw malformed("entry id");
    lastId = id;
    try {
      decoded.push(decode(id, entry as RawStreamEntry));
    } catch (error) {
      unreadable.push(unreadableEntry(id, entry as unknown[], error));
    }
  }
  return { decoded, unreadable, lastId, size: entries.length };
}

function unreadableEntry(id: string, entry: readonly unknown[], error: unknown): UnreadableEntry {
  return { id, ...attribution(entry), problem: problemOf(error) };
}

function problemOf(error: unknown): string {
  return error instanceof Error && error.message.startsWith("malformed") ? error.message : "malformed event log entry";
}

/** A batch of log entries decoded as far as their heads (the tail's readEntries). */
export interface DecodedHeads {
  readonly entries: TailEntry[];
  readonly unreadable: UnreadableEntry[];
  readonly lastId: string | undefined;
  readonly size: number;
}

/** The index of the expire time among a packed entry's values: the last of the head's. */
const EXPIRE_INDEX = PACKED_ORDER.indexOf("e");

/**
 * A packed entry whose head was decoded: the whole event is decoded when
 * asked for; one that does not decode then is reported (`report`) and
 * answers undefined.
 */
class PackedTailEntry implements TailEntry {
  constructor(
    readonly id: string,
    readonly type: SessionEventType,
    readonly tenant: string,
    readonly sessionId: string,
    readonly expireTime: number,
    private readonly raw: RawStreamEntry,
    private readonly report: (entry: UnreadableEntry) => void,
  ) {}

  event(): StoredEvent | undefined {
    try {
      return decodeStreamEntry(this.raw);
    } catch (error) {
      this.report(unreadableEntry(this.id, this.raw, error));
      return undefined;
    }
  }
}

/**
 * The string methods the head decoding calls, looked up once: called on the
 * reply's strings, each call site's property lookup went through V8's generic
 * load stub (callgrind: one per call, about half of a head's instructions).
 */
const { indexOf, charCodeAt, slice } = String.prototype;

/** The length of a session id (SESSION_ID's form, which the whole decode checks). */
const SESSION_ID_LENGTH = 36;

/** The decimal integer text[from, to) (1 to 15 ASCII digits, so exact), or -1. Cheaper than Number() of a slice. */
function digits(text: string, from: number, to: number): number {
  if (to <= from || to - from > 15) return -1;
  let n = 0;
  for (let at = from; at < to; at++) {
    const d = charCodeAt.call(text, at) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The head of a packed entry (type, tenant, session id, expire time: the
 * values up to EXPIRE_INDEX), or undefined when those do not read. The
 * values after it, and the session id's form, are looked at only when the
 * event is asked for.
 */
function packedHead(id: string, raw: RawStreamEntry, report: (entry: UnreadableEntry) => void): PackedTailEntry | undefined {
  const packed = raw[1][1];
  if (typeof packed !== "string") return undefined;
  const typeEnd = indexOf.call(packed, PACKED_SEPARATOR);
  const tenantEnd = typeEnd < 0 ? -1 : indexOf.call(packed, PACKED_SEPARATOR, typeEnd + 1);
  const idEnd = tenantEnd < 0 ? -1 : indexOf.call(packed, PACKED_SEPARATOR, tenantEnd + 1);
  let expireStart = idEnd;
  for (let n = 3; n < EXPIRE_INDEX && expireStart >= 0; n++) expireStart = indexOf.call(packed, PACKED_SEPARATOR, expireStart + 1);
  const expireEnd = expireStart < 0 ? -1 : indexOf.call(packed, PACKED_SEPARATOR, expireStart + 1);
  if (expireEnd < 0 || idEnd - tenantEnd - 1 !== SESSION_ID_LENGTH) return undefined;
  const type = slice.call(packed, 0, typeEnd);
  const expireTime = digits(packed, expireStart + 1, expireEnd);
  if (!TYPES.has(type) || expireTime < 0) return undefined;
  let tenant: string;
  try {
    tenant = tenantOf(slice.call(packed, typeEnd + 1, tenantEnd));
  } catch {
    return undefined;
  }
  return new PackedTailEntry(id, type as SessionEventType, tenant, slice.call(packed, tenantEnd + 1, idEnd), expireTime, raw, report);
}

/**
 * As decodeStreamBatch, decoding a packed entry only as far as its head
 * (PackedTailEntry); an entry of the named form, or one whose head does not
 * decode, is decoded whole at once. `report` hears of the entries found
 * unreadable later, when their event is asked for.
 */
export function decodeStreamHeads(entries: unknown, report: (entry: UnreadableEntry) => void): DecodedHeads {
  const { decoded, ...rest } = decodeEach(entries, (id, entry): TailEntry => (Array.isArray(entry[1]) && entry[1][0] === PACKED_FIELD ? packedHead(id, entry, report) : undefined) ?? decodedEntry(decodeStreamEntry(entry)));
  return { entries: decoded, ...rest };
}

/** The tenant and session an unreadable entry names, when both read. */
function attribution(entry: readonly unknown[]): { tenant?: string; sessionId?: string } {
  const flat = Array.isArray(entry[1]) ? (entry[1] as unknown[]) : [];
  let tenant: string | undefined;
  let sessionId: string | undefined;
  if (flat[0] === PACKED_FIELD) {
    // A packed entry with the wrong number of values still names its session when those two come first as they should.
    const values = typeof flat[1] === "string" ? flat[1].split(PACKED_SEPARATOR) : [];
    tenant = values[1];
    sessionId = values[2];
  } else {
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (flat[i] === "T" && typeof flat[i + 1] === "string") tenant = flat[i + 1] as string;
      if (flat[i] === "i" && typeof flat[i + 1] === "string") sessionId = flat[i + 1] as string;
    }
  }
  if (tenant === undefined || sessionId === undefined || !SESSION_ID.test(sessionId)) return {};
  try {
    return { tenant: decodeTenant(tenant), sessionId };
  } catch {
    return {};
  }
}

const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** All-or-nothing decoding, for replies of our own scripts. */
/** The generation field `g` of a raw entry (the last pair emit() writes), or undefined for an entry without one. */
export function entryGeneration(entry: unknown): string | undefined {
  if (!Array.isArray(entry) || !Array.isArray(entry[1])) return undefined;
  const flat = entry[1] as unknown[];
  for (let i = flat.length - 2; i >= 0; i -= 2) {
    if (flat[i] === "g") return typeof flat[i + 1] === "string" ? (flat[i + 1] as string) : undefined;
  }
  return undefined;
}

export function decodeStreamEntries(entries: unknown): StoredEvent[] {
  if (!Array.isArray(entries)) throw malformed("entries");
  return entries.map(decodeStreamEntry);
}
