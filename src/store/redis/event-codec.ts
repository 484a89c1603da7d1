/**
 * Decodes event-log stream entries (written by emit() in lua/prelude.ts) into
 * StoredEvents. XRANGE inside read_events and XREAD on the tail connection
 * return entries in the same shape: [id, [field, value, field, value, ...]].
 */
import type { AccessLevel, SessionRecord, SessionStatus } from "../../domain/model.js";
import { eventIdTime } from "../event-id.js";
import { SESSION_EVENT_TYPES, type SessionEventType, type StoredEvent } from "../store.js";
import type { UnreadableEntry } from "../unreadable.js";
import { decodeTenant } from "./keys.js";
import { sealedFields } from "./record-codec.js";

const LEVELS: ReadonlySet<string> = new Set<AccessLevel>(["read", "write", "admin"]);
const TYPES: ReadonlySet<string> = new Set<string>(SESSION_EVENT_TYPES);

/** One raw entry as ioredis returns it. */
export type RawStreamEntry = [id: string, fields: string[]];

function malformed(what: string): Error {
  return new Error(`malformed event log entry from redis (${what})`);
}

function int(fields: ReadonlyMap<string, string>, name: string): number {
  const n = Number(fields.get(name));
  if (!Number.isSafeInteger(n)) throw malformed(`field ${name}`);
  return n;
}

function text(fields: ReadonlyMap<string, string>, name: string): string {
  const v = fields.get(name);
  if (v === undefined) throw malformed(`field ${name} missing`);
  return v;
}

function sessionIdOf(id: string): string {
  if (!SESSION_ID.test(id)) throw malformed("session id");
  return id;
}

function statusOf(type: SessionEventType): SessionStatus {
  return type === "closed" || type === "expired" ? type : "active";
}

export function decodeStreamEntry(entry: unknown): StoredEvent {
  if (!Array.isArray(entry) || typeof entry[0] !== "string" || !Array.isArray(entry[1])) throw malformed("shape");
  const [id, flat] = entry as RawStreamEntry;
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i] as string, flat[i + 1] as string);
  const type = text(fields, "k");
  const level = text(fields, "l");
  if (!TYPES.has(type) || !LEVELS.has(level)) throw malformed("kind or level");
  const kind = type as SessionEventType;
  const session: SessionRecord = {
    tenant: decodeTenant(text(fields, "T")),
    sessionId: sessionIdOf(text(fields, "i")),
    userId: text(fields, "u"),
    dataSource: text(fields, "d"),
    accessLevel: level as AccessLevel,
    status: statusOf(kind),
    createTime: int(fields, "c"),
    expireTime: int(fields, "e"),
    lastAccessTime: int(fields, "a"),
    endTime: int(fields, "t"),
    metadata: text(fields, "m"),
    version: int(fields, "v"),
    // Entries written before sealed identifiers existed have neither field.
    ...sealedFields(fields.get("U") ?? "", fields.get("D") ?? "", ""),
  };
  const x = fields.get("x") ?? "";
  const dataKeys = x === "" ? [] : (JSON.parse(x) as unknown);
  if (!Array.isArray(dataKeys) || !dataKeys.every((k) => typeof k === "string")) throw malformed("data keys");
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
  if (!Array.isArray(entries)) throw malformed("entries");
  const events: StoredEvent[] = [];
  const unreadable: UnreadableEntry[] = [];
  let lastId: string | undefined;
  for (const entry of entries as unknown[]) {
    const id = Array.isArray(entry) && typeof entry[0] === "string" && EVENT_ID.test(entry[0]) ? entry[0] : undefined;
    if (id === undefined) throw malformed("entry id");
    lastId = id;
    try {
      events.push(decodeStreamEntry(entry));
    } catch (error) {
      unreadable.push({ id, ...attribution(entry as unknown[]), problem: error instanceof Error && error.message.startsWith("malformed") ? error.message : "malformed event log entry" });
    }
  }
  return { events, unreadable, lastId, size: entries.length };
}

/** The tenant and session an unreadable entry names, when both read. */
function attribution(entry: readonly unknown[]): { tenant?: string; sessionId?: string } {
  const flat = Array.isArray(entry[1]) ? (entry[1] as unknown[]) : [];
  let tenant: string | undefined;
  let sessionId: string | undefined;
  for (let i = 0; i + 1 < flat.length; i += 2) {
    if (flat[i] === "T" && typeof flat[i + 1] === "string") tenant = flat[i + 1] as string;
    if (flat[i] === "i" && typeof flat[i + 1] === "string") sessionId = flat[i + 1] as string;
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
