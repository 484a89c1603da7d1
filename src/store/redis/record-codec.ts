/**
 * Decodes the flat string arrays the scripts return (see encode() in
 * lua/prelude.ts) into SessionRecords.
 */
import type { AccessLevel, SealedFields, SessionRecord, SessionStatus } from "../../domain/model.js";
import { decodeTenant } from "./keys.js";

/**
 * Strings per record: T, sid, user, dataSource, level, status, create, expire,
 * lastAccess, end, metadata, version, sealed user, sealed data source,
 * metadata tag (the last three "" without encryption).
 */
export const RECORD_WIDTH = 15;

const LEVELS: ReadonlySet<string> = new Set<AccessLevel>(["read", "write", "admin"]);
const STATUSES: ReadonlySet<string> = new Set<SessionStatus>(["active", "expired", "closed"]);

function at(reply: readonly string[], i: number): string {
  const v = reply[i];
  if (v === undefined) throw new Error(`malformed record reply from redis (field ${i} missing)`);
  return v;
}

function int(reply: readonly string[], i: number): number {
  const n = Number(at(reply, i));
  if (!Number.isSafeInteger(n)) throw new Error(`malformed record reply from redis (field ${i} not an integer)`);
  return n;
}

/** Decodes the record that starts at `offset`. */
export function decodeRecord(reply: readonly string[], offset: number): SessionRecord {
  const level = at(reply, offset + 4);
  const status = at(reply, offset + 5);
  if (!LEVELS.has(level) || !STATUSES.has(status)) {
    throw new Error("malformed record reply from redis (level or status)");
  }
  return {
    tenant: decodeTenant(at(reply, offset)),
    sessionId: at(reply, offset + 1),
    userId: at(reply, offset + 2),
    dataSource: at(reply, offset + 3),
    accessLevel: level as AccessLevel,
    status: status as SessionStatus,
    createTime: int(reply, offset + 6),
    expireTime: int(reply, offset + 7),
    lastAccessTime: int(reply, offset + 8),
    endTime: int(reply, offset + 9),
    metadata: at(reply, offset + 10),
    version: int(reply, offset + 11),
    ...sealedFields(at(reply, offset + 12), at(reply, offset + 13), at(reply, offset + 14)),
  };
}

/**
 * Strings of a live record in a get's reply (lua/get.ts): user, dataSource,
 * metadata, "<level> <create> <expire> <lastAccess> <version>" (none of them
 * holds a space), then, unless the record has no sealed fields (encryption
 * off), sealed user, sealed data source, metadata tag. The tenant and session
 * id are the caller's; status and end are those of a live session.
 */
export const LIVE_RECORD_WIDTH = 4;

/** Decodes the live record at `offset` of a get's reply for the session `sessionId` of `tenant`. */
export function decodeLiveRecord(tenant: string, sessionId: string, reply: readonly string[], offset: number): SessionRecord {
  const numbers = at(reply, offset + 3).split(" ");
  const level = numbers[0] as string;
  if (numbers.length !== 5 || !LEVELS.has(level)) throw new Error("malformed record reply from redis (level or numbers)");
  return {
    tenant,
    sessionId: asStored(sessionId),
    userId: at(reply, offset),
    dataSource: at(reply, offset + 1),
    accessLevel: level as AccessLevel,
    status: "active",
    createTime: int(numbers, 1),
    expireTime: int(numbers, 2),
    lastAccessTime: int(numbers, 3),
    endTime: 0,
    metadata: at(reply, offset + 2),
    version: int(numbers, 4),
    ...(reply.length > offset + LIVE_RECORD_WIDTH ? sealedFields(at(reply, offset + 4), at(reply, offset + 5), at(reply, offset + 6)) : NOT_SEALED),
  };
}

/** What a create sent: the fields of the record it makes (see lua/create.ts). */
export interface CreatedFields {
  readonly tenant: string;
  readonly userId: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  readonly ttlMs: number;
  readonly metadata: string;
  readonly sealed?: { readonly user?: string; readonly metadataTag?: string };
}

/**
 * The record a create made at `now` (the script's clock) from what it sent,
 * as the script stores it (encode_live); `sealedDataSource` is the one the
 * script answers with. The script formats the expire time as an integer (%d).
 */
export function createdRecord(sent: CreatedFields, sessionId: string, now: number, sealedDataSource: string): SessionRecord {
  return {
    tenant: sent.tenant,
    sessionId,
    userId: asStored(sent.userId),
    dataSource: asStored(sent.dataSource),
    accessLevel: sent.accessLevel,
    status: "active",
    createTime: now,
    expireTime: Math.trunc(now + sent.ttlMs),
    lastAccessTime: now,
    endTime: 0,
    metadata: asStored(sent.metadata),
    version: 1,
    ...sealedFields(asStored(sent.sealed?.user ?? ""), sealedDataSource, asStored(sent.sealed?.metadataTag ?? "")),
  };
}

/** A lone surrogate (paired ones match as one code point under the u flag). */
const LONE_SURROGATE = /\p{Cs}/u;

/** A string as Redis gives it back: sent as UTF-8, where a lone surrogate becomes U+FFFD. */
function asStored(sent: string): string {
  return LONE_SURROGATE.test(sent) ? Buffer.from(sent, "utf8").toString("utf8") : sent;
}

/** `{ sealed }` with the non-empty sealed forms, or nothing when there are none (encryption off). */
export function sealedFields(user: string, dataSource: string, metadataTag: string): { sealed?: SealedFields } {
  if (user === "" && dataSource === "" && metadataTag === "") return NOT_SEALED;
  // Assigned, not spread: this runs for every record a call decodes.
  const sealed: { user?: string; dataSource?: string; metadataTag?: string } = {};
  if (user !== "") sealed.user = user;
  if (dataSource !== "") sealed.dataSource = dataSource;
  if (metadataTag !== "") sealed.metadataTag = metadataTag;
  return { sealed };
}

const NOT_SEALED: { sealed?: SealedFields } = Object.freeze({});

/**
 * Like decodeRecords for listings: a record that does not decode (a field
 * tampered with in Redis) is left out and reported by its session id, so one
 * bad record costs that record, not the page. `lastKey` is the listing order
 * key of the last record of either kind, when it reads: where the next page starts.
 */
export function decodeListedRecords(reply: readonly string[], offset: number): { records: SessionRecord[]; unreadable: string[]; lastKey?: { expireTime: number; sessionId: string } } {
  const records: SessionRecord[] = [];
  const unreadable: string[] = [];
  let lastKey: { expireTime: number; sessionId: string } | undefined;
  for (let i = offset; i + RECORD_WIDTH <= reply.length; i += RECORD_WIDTH) {
    const sessionId = reply[i + 1] ?? "";
    const expireTime = Number(reply[i + 7]);
    lastKey = Number.isSafeInteger(expireTime) ? { expireTime, sessionId } : lastKey;
    try {
      records.push(decodeRecord(reply, i));
    } catch {
      unreadable.push(sessionId);
    }
  }
  return lastKey === undefined ? { records, unreadable } : { records, unreadable, lastKey };
}

/** Decodes consecutive records from `offset` to the end of the reply. */
export function decodeRecords(reply: readonly string[], offset: number): SessionRecord[] {
  const out: SessionRecord[] = [];
  for (let i = offset; i + RECORD_WIDTH <= reply.length; i += RECORD_WIDTH) {
    out.push(decodeRecord(reply, i));
  }
  return out;
}
