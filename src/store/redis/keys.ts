/**
 * Redis key layout of the session store, the one place it is written down:
 * RedisKeys builds the names in TypeScript, KEY_LAYOUT_LUA builds them inside
 * the scripts (lua/prelude.ts includes it), Partitioning decides which
 * partition a session, a user and so every key belongs to, and
 * sessionKeyMatcher and countersKeyMatcher parse key names (keyspace
 * notifications, `npm run reencrypt`).
 *
 * With key prefix P (default "sd:"), encoded tenant T (see encodeTenant) and
 * partition tag Q (see Partitioning: "" with one partition, "{<tag>}" with
 * several), and S = `{sid}` with one partition, `Q<sid>` with several:
 *
 * | key                   | type   | contents                                                  | expires at                    |
 * |-----------------------|--------|-----------------------------------------------------------|-------------------------------|
 * | `P T:S`               | HASH   | live record: u user, d data source, l level (r, w or a; | expire + grace                |
 * |                       |        | records of earlier versions spell it out), c create, e expire, a last access, |        |
 * |                       |        | m metadata, v version, r request id (if any), b data bytes; |                               |
 * |                       |        | rc the end (ms) of the request id's claim (`Qc:` below)    |                               |
 * |                       |        | encryption on: U sealed user, mt metadata tag (the sealed  |                               |
 * |                       |        | data source is the counters' n:, see sealed_source; earlier records carry D) |          |
 * | `P T:S:d`             | HASH   | session data, key → value (encryption on: key token →      | expire + grace                |
 * |                       |        | `<sealed key name> <sealed value>`)                        |                               |
 * | `P T:S:a`             | STRING | archived final state, MessagePack: u d l c e a m v s t U D mt | end + archive retention    |
 * |                       |        | (the record fields + s status, t end; see write_archive)   |                               |
 * | `P T:S:x`             | STRING | no longer written: a shadow key of earlier versions (its   | expire time (its session's;   |
 * |                       |        | keyspace notification woke the scheduler); left to expire | nothing reads it)             |
 * | `P T:Qr:<requestId>`  | STRING | session id created for that idempotency key (a guarded     | expire + grace                |
 * |                       |        | create's key is `u:<userId>\n<requestId>`, see store.ts); |                               |
 * |                       |        | with several partitions guarded creates' only (and earlier versions') |                    |
 * | `P T:Qc:<requestId>`  | STRING | several partitions: the claim of an unguarded create's     | the claim's end: expire +     |
 * |                       |        | request id, `<session id> <claim time (ms)>`, in the      | slack + command timeout, kept |
 * |                       |        | request id's partition (Partitioning.ofRequestId), see    | ahead of expire by extend     |
 * |                       |        | request-claims.ts                                          | (record field rc)             |
 * | `P T:S:v`             | STRING | several partitions: a claimed session id made void, never  | 1 h (VOID_MS)                 |
 * |                       |        | to be created (request-claims.ts)                          |                               |
 * | `P T:Qui:<userId>`    | ZSET   | live sessions of the user, score = expire time, member =  | max(member expire) + grace    |
 * |                       |        | the session id's 16 bytes (lua/indexes.ts)                 |                               |
 * | `P T:Qsi:<dataSource>` | ZSET  | directory of the data source's bucketed index: member and  | max(member expire) + grace    |
 * |                       |        | score = each bucket's lower bound L (decimal ms)           |                               |
 * | `P T:Qsb:L:<dataSource>` | ZSET | a bucket: live sessions with L <= expire time < the next   | max(member expire) + grace    |
 * |                       |        | bucket's L, score = expire time, member = 16-byte id (split past 60 members: a listpack) | |
 * | `P T:Qai`             | ZSET   | directory of the tenant-wide bucketed index (as `Qsi:`)    | max(member expire) + grace    |
 * | `P T:Qab:L`           | ZSET   | a bucket of every live session of the tenant (as `Qsb:`)   | max(member expire) + grace    |
 * | `P T:Qu:<userId>`, `P T:Qs:<dataSource>`, `P T:Qall` | ZSET | the same indexes as written by earlier versions | as above                 |
 * |                       |        | (member = the session id's text, one ZSET each): read and merged, never added to, |        |
 * |                       |        | emptied as their sessions end (or move, on extend)         |                               |
 * | `P T:Qm`              | HASH   | counters: total, active, expired, closed, dsum,            | never (a few fields per tenant) |
 * |                       |        | l:<level> and s:<dataSource> live gauges (deleted at 0),   |                               |
 * |                       |        | nds the number of live data sources (the s: fields);       |                               |
 * |                       |        | encryption on: n:<dataSource> its sealed name (with s:),   |                               |
 * |                       |        | the one records of that data source answer with            |                               |
 * | `P T:Qev`             | STRING | id of the tenant's newest event: its watchers' heartbeat   | never (one per tenant)        |
 * |                       |        | cursors never show the log's position (other tenants' writes) |                          |
 * | `P Qev`               | STREAM | event log of every tenant (see emit() in lua/prelude.ts);  | never (trimmed by count and   |
 * |                       |        | the entry id is the watch cursor                           | age: WATCH_RETENTION*)        |
 * | `P Qel`               | STRING | several partitions only: the last id the log assigned     | never (one per partition)     |
 * |                       |        | (emit picks ids unique across partitions, see emit)        |                               |
 * | `P Qw`                | STRING | REDIS_WAIT_REPLICAS on a cluster: written before a WAIT    | 1 s                           |
 * |                       |        | that must cover other connections' writes (replica-wait.ts) |                              |
 * | `P Qg`                | STRING | the event log's generation: a time (ms) before its first   | never (Redis data loss        |
 * |                       |        | event; a cursor older than it is of a lost log             | deletes it: a new generation) |
 * | `P Qdx`               | ZSET   | due queue: member `T\n<dataSource>`, score = a lower bound | never (one member per         |
 * |                       |        | of the earliest expire time in that data-source index; the | non-empty data-source index)  |
 * |                       |        | expiry scheduler's only clock (no key per session)         |                               |
 * | `P Qdw`               | STREAM | due wake-ups: one entry (MAXLEN 1) appended by a write     | never (one entry)             |
 * |                       |        | that gives the due queue a new lowest score, which expiry  |                               |
 * |                       |        | schedulers block on (XREAD) instead of reading the log     |                               |
 * | `P Qn0`, `P Qn1`      | none   | never written: scripts probe them to learn whether the     | (never exist)                 |
 * |                       |        | partition's slot is migrating (see lua/prelude.ts)         |                               |
 * | `P Qps`               | STRING | several partitions, encryption on: the partition secret,   | never (a copy per partition)  |
 * |                       |        | sealed (src/store/partition-secret.ts)                     |                               |
 *
 * Identifiers as keyed HMACs: with encryption on (ENCRYPTION_KEYS), every
 * <userId>, <dataSource> and <requestId> above, the data hash's fields and the
 * `u`/`d` record and archive fields are tokens: base64url HMAC-SHA256 (of user
 * ids, data sources and data keys the first 22 characters) under a
 * key derived from the primary encryption key (FieldCipher.indexNames), made
 * in TypeScript (src/store/sealed-store.ts) before a script runs; the scripts
 * never see the identifiers. The names travel sealed beside them (U, D, n:,
 * the data values' prefix, the event log's U, D and x). Without encryption they
 * are the identifiers themselves.
 *
 * Why this shape:
 * - Partitions (REDIS_PARTITIONS, fixed for the life of a deployment: the
 *   partition of a session follows from its id, so changing the count
 *   orphans every key). Every key of a partition carries the partition's
 *   hash tag, so each script touches one hash slot and runs on a Redis
 *   Cluster; the partitions spread over the cluster's primaries (the tags are
 *   picked so that their slots are evenly spaced over 0..16383, which the
 *   default slot allocation of `redis-cli --cluster create` splits evenly).
 *   With one partition Q is empty and every name is the single-primary
 *   layout, so an existing single-primary deployment keeps its data.
 * - The user decides the partition (a hash of tenant and user; with
 *   encryption on a keyed HMAC under the partition secret, which no key
 *   rotation changes: src/store/partition-secret.ts), so a user's
 *   listing and the per-user cap stay one index in one slot; the session id
 *   is drawn (Partitioning.newSessionId: a random UUID whose last three hex
 *   digits step until it hashes to the user's partition) so that any call by id finds its
 *   partition from the id alone. A guarded create's request id key
 *   (scoped to its user) lives in the user's partition. An unguarded one is
 *   matched tenant-wide, so with several partitions it is claimed first in a
 *   partition of its own (a hash of tenant and request id) and the session
 *   is then created in the user's: two atomic steps that behave as one Redis's
 *   one (request-claims.ts: a claim whose session never came is made void in
 *   the session's slot and taken over; one whose session ended is taken
 *   over). With one partition the create script does it all; the tenant caps are made tenant-wide before the
 *   script by RedisStore.tenantCapsLeft (reads of every partition's counters). Data-source and unfiltered listings merge
 *   one page from every partition (at most N x page index reads); counters
 *   are summed over partitions at read.
 * - Each partition has its own event log, generation and due queue. Event ids
 *   stay "<ms>-<seq>" and are unique across partitions (emit: the sequence of
 *   partition i is i mod N), so one id is still a complete watch cursor: the
 *   reader delivers an event only once no partition can still add an earlier
 *   one (RedisStore.readEvents, the frontier), so resuming after an id never
 *   skips an event of another partition.
 * - Every key of a session expires with it (grace included), and index keys
 *   outlive their longest member by the grace, so nothing leaks if the expiry
 *   scheduler is down for longer than the grace.
 * - Expiry costs no key per session: the due queue (one member per data
 *   source) is the scheduler's only clock, and a write that gives it a new
 *   lowest score appends to the partition's due wake-ups, on which every
 *   process's scheduler blocks while it sleeps (SessionStore.waitDue), so
 *   neither a keyspace notification nor a read of every event is needed.
 * - The tenant-wide index makes an unfiltered listing one bounded walk per
 *   partition (its page of members, their buckets), whatever the number of
 *   data sources.
 * - Memory per session (lua/indexes.ts): a ZSET of up to 128 small members
 *   is a listpack (about 28 B per member here), a larger one a skiplist and a
 *   dict (about 140 B per member). Indexes hold 16-byte ids, and the two that
 *   hold every session are split by expire time into buckets that stay
 *   listpacks: about 33 B per session each instead of about 140.
 * - Nothing is ever found with SCAN or KEYS.
 *
 * The tenant is percent-encoded so that it cannot contain ":", "{", "}" or a
 * newline, which keeps every key and due-queue member unambiguous.
 */

import { randomUUID } from "node:crypto";

export const DEFAULT_KEY_PREFIX = "sd:";

/** Suffixes of a session's keys after `P T:S`. */
const DATA = ":d";
const ARCHIVE = ":a";
/** Shadow keys of earlier versions (expiring at their session's expire time): parsed so that tools skip them. */
const SHADOW = ":x";
/** Per-tenant keys after `P T:Q`. */
const REQUEST_ID = "r:";
const REQUEST_CLAIM = "c:";
/** Suffix after `P T:S` of a session id that may never be created (lua/claim.ts). */
const VOID = ":v";
const USER = "u:";
const DATA_SOURCE = "s:";
const ALL = "all";
const USER_INDEX = "ui:";
const SOURCE_DIRECTORY = "si:";
const SOURCE_BUCKET = "sb:";
const ALL_DIRECTORY = "ai";
const ALL_BUCKET = "ab:";
const COUNTERS = "m";
const TENANT_LAST_EVENT = "ev";
/** Keys of a partition, after `P Q`. */
const DUE = "dx";
const DUE_WAKE = "dw";
const GENERATION = "g";
const EVENTS = "ev";
const EVENTS_LAST = "el";
const WAIT_ADVANCE = "w";
const NEVER_WRITTEN = ["n0", "n1"] as const;
const PARTITION_SECRET = "ps";

/** Redis Cluster has 16384 hash slots. */
const SLOTS = 16384;
/** Upper bound of REDIS_PARTITIONS: every partition is polled by readers and sweeps. */
export const MAX_PARTITIONS = 1024;

/**
 * Which partition a session, a user and a key belong to, and each
 * partition's hash tag (see the layout above). One instance per store.
 */
export class Partitioning {
  /** The tag Q of each partition: "" with one partition, else "{<tag>}". */
  readonly tags: readonly string[];

  constructor(readonly count: number) {
    if (!Number.isInteger(count) || count < 1 || count > MAX_PARTITIONS) throw new Error(`partitions must be 1..${MAX_PARTITIONS}`);
    this.tags = count === 1 ? [""] : evenlySpacedTags(count);
  }

  /** The partition of a session id (any partition for one partition). */
  ofSession(sessionId: string): number {
    return this.count === 1 ? 0 : crc16(sessionId) % this.count;
  }

  /**
   * The partition of a user's sessions: tenant and user (as the store
   * receives them, or the user's placement: CreateSessionInput.userPlacement) decide it.
   */
  ofUser(tenant: string, userId: string): number {
    return this.count === 1 ? 0 : crc16(`${encodeTenant(tenant)}\n${userId}`) % this.count;
  }

  /**
   * The partition of an unguarded request id's claim (lua/claim.ts): tenant
   * and request id (as stored) decide it, so every create with it meets the
   * claim there, whatever its user.
   */
  ofRequestId(tenant: string, requestId: string): number {
    return this.count === 1 ? 0 : crc16(`${encodeTenant(tenant)}\nr\n${requestId}`) % this.count;
  }

  /**
   * A random UUID v4 in the user's partition. One draw, then its last three
   * hex digits (12 of its 122 random bits) step from their drawn value until
   * the id falls in the partition, the CRC of the other 33 characters taken
   * once: each candidate costs three table look-ups instead of a UUID (the
   * average number of candidates is the partition count). The id keeps 110
   * random bits; a draw whose 4096 tails all miss (rare below 1024
   * partitions) is drawn again.
   */
  newSessionId(tenant: string, userId: string): string {
    if (this.count === 1) return randomUUID();
    const want = this.ofUser(tenant, userId);
    for (;;) {
      const id = randomUUID();
      const head = id.slice(0, UUID_HEAD);
      const headCrc = crc16From(0, head);
      const drawn = Number.parseInt(id.slice(UUID_HEAD), 16);
      for (let i = 0; i < HEX3.length; i++) {
        const tail = HEX3[(drawn + i) % HEX3.length] as string;
        if (crc16From(headCrc, tail) % this.count === want) return head + tail;
      }
    }
  }
}

/** Characters of a UUID before its last three hex digits (the tail newSessionId steps). */
const UUID_HEAD = 33;
/** Every three-digit lowercase hex string, in order. */
const HEX3: readonly string[] = Array.from({ length: 4096 }, (_, i) => i.toString(16).padStart(3, "0"));

/** For each partition the first tag "<j>" (j = 0, 1, ...) whose slot falls in the partition's equal share of the slots. */
function evenlySpacedTags(count: number): string[] {
  const tags: (string | undefined)[] = new Array<string | undefined>(count).fill(undefined);
  let missing = count;
  for (let j = 0; missing > 0; j++) {
    const tag = String(j);
    const share = Math.floor(((crc16(tag) % SLOTS) * count) / SLOTS);
    if (tags[share] === undefined) {
      tags[share] = `{${tag}}`;
      missing -= 1;
    }
  }
  return tags as string[];
}

/** The hash slot of a key without hash tag (the Redis Cluster specification: CRC16/XMODEM of the UTF-8 bytes). */
export function keySlot(text: string): number {
  return crc16(text) % SLOTS;
}

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

function crc16(text: string): number {
  return crc16From(0, text);
}

/**
 * The CRC continued from `crc` over the string's UTF-8 bytes; an ASCII
 * string (every session id, most keys) is its own bytes, read without a copy.
 */
function crc16From(crc: number, text: string): number {
  let out = crc;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return crc16Bytes(crc, Buffer.from(text, "utf8"));
    out = ((out << 8) & 0xffff) ^ (CRC16_TABLE[((out >> 8) ^ code) & 0xff] as number);
  }
  return out;
}

function crc16Bytes(crc: number, bytes: Uint8Array): number {
  let out = crc;
  for (const byte of bytes) out = ((out << 8) & 0xffff) ^ (CRC16_TABLE[((out >> 8) ^ byte) & 0xff] as number);
  return out;
}

/**
 * The same names for the Lua scripts: P is the key prefix (ARGV[1]), Q the
 * partition tag (ARGV[11]), T an encoded tenant, tp = tenant_prefix(T).
 */
export const KEY_LAYOUT_LUA = String.raw`
-- The partition's keys, named at the start of every call (key_names: P and Q
-- vary per call), made again only when they changed (KN_P, KN_Q).
local Q, K_DUE, K_WAKE, K_EV, K_EV_LAST, K_GEN, K_NEVER_1, K_NEVER_2, KN_P, KN_Q
-- The last tenant's prefix (tenant_prefix).
local TP_T, TP
local function key_names()
  Q = ARGV[11]
  if P == KN_P and Q == KN_Q then return end
  KN_P, KN_Q, TP_T = P, Q, nil
  K_DUE = P .. Q .. '${DUE}'
  -- The due queue's wake-ups (due_lower).
  K_WAKE = P .. Q .. '${DUE_WAKE}'
  -- The partition's event log (see emit).
  K_EV = P .. Q .. '${EVENTS}'
  -- Several partitions: the last id the partition's log assigned (see emit).
  K_EV_LAST = P .. Q .. '${EVENTS_LAST}'
  -- The event log's generation: a time (ms) before its first event. Redis data
  -- loss (a restart without persistence, FLUSHALL, a failover to an empty
  -- replica) deletes it with everything else; the next script makes a new one,
  -- later than every event of the lost log, so a cursor older than the
  -- generation is known to be of another log (read_events: out_of_range).
  K_GEN = P .. Q .. '${GENERATION}'
  -- Two keys of the partition's slot that are never written (SLOT_MOVING in the prelude).
  K_NEVER_1, K_NEVER_2 = P .. Q .. '${NEVER_WRITTEN[0]}', P .. Q .. '${NEVER_WRITTEN[1]}'
end
-- Made again only for another tenant (TP_T): a batch's calls mostly share one.
local function tenant_prefix(T)
  if T ~= TP_T then TP_T, TP = T, P .. T .. ':' end
  return TP
end
local function k_rec(tp, sid)
  if Q == '' then return tp .. '{' .. sid .. '}' end
  return tp .. Q .. sid
end
local function k_data(tp, sid) return k_rec(tp, sid) .. '${DATA}' end
local function k_arch(tp, sid) return k_rec(tp, sid) .. '${ARCHIVE}' end
local function k_req(tp, rid) return tp .. Q .. '${REQUEST_ID}' .. rid end
local function k_claim(tp, rid) return tp .. Q .. '${REQUEST_CLAIM}' .. rid end
local function k_void(tp, sid) return k_rec(tp, sid) .. '${VOID}' end
local function k_user(tp, uid) return tp .. Q .. '${USER}' .. uid end
local function k_src(tp, ds) return tp .. Q .. '${DATA_SOURCE}' .. ds end
local function k_all(tp) return tp .. Q .. '${ALL}' end
local function k_user_idx(tp, uid) return tp .. Q .. '${USER_INDEX}' .. uid end
local function k_src_dir(tp, ds) return tp .. Q .. '${SOURCE_DIRECTORY}' .. ds end
local function k_src_bucket(tp, ds, lb) return tp .. Q .. '${SOURCE_BUCKET}' .. lb .. ':' .. ds end
local function k_all_dir(tp) return tp .. Q .. '${ALL_DIRECTORY}' end
local function k_all_bucket(tp, lb) return tp .. Q .. '${ALL_BUCKET}' .. lb end
local function k_ctr(tp) return tp .. Q .. '${COUNTERS}' end
local function k_ev_last(tp) return tp .. Q .. '${TENANT_LAST_EVENT}' end
local function due_member(T, ds) return T .. '\n' .. ds end
`;

/** Which of a session's keys a name is. */
export type SessionKeyKind = "record" | "data" | "archive" | "shadow";

export interface SessionKeyName {
  readonly tenant: string;
  readonly sessionId: string;
  readonly kind: SessionKeyKind;
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const KINDS: Readonly<Record<string, SessionKeyKind>> = { "": "record", [DATA]: "data", [ARCHIVE]: "archive", [SHADOW]: "shadow" };

/** Parses the name of a session's key under `prefix` (either partition form); undefined for any other key. */
export function sessionKeyMatcher(prefix: string): (key: string) => SessionKeyName | undefined {
  const pattern = new RegExp(`^${escapeRegExp(prefix)}([^:{}]+):(?:\\{(${UUID})\\}|\\{[0-9]+\\}(${UUID}))(${[DATA, ARCHIVE, SHADOW].join("|")})?$`);
  return (key) => {
    const match = pattern.exec(key);
    if (match === null) return undefined;
    const kind = KINDS[match[4] ?? ""];
    const sessionId = match[2] ?? match[3];
    return kind === undefined || sessionId === undefined ? undefined : { tenant: decodeTenant(match[1] as string), sessionId, kind };
  };
}

/** Parses the name of a tenant's counters key under `prefix` into the tenant; undefined for any other key. */
export function countersKeyMatcher(prefix: string): (key: string) => string | undefined {
  const pattern = new RegExp(`^${escapeRegExp(prefix)}([^:{}]+):(?:\\{[0-9]+\\})?${COUNTERS}$`);
  return (key) => {
    const match = pattern.exec(key);
    return match?.[1] === undefined ? undefined : decodeTenant(match[1]);
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Percent-encodes a tenant for use inside keys (a plain tenant such as "default" is unchanged). */
export function encodeTenant(tenant: string): string {
  return encodeURIComponent(tenant);
}

export function decodeTenant(encoded: string): string {
  return decodeURIComponent(encoded);
}

/** A session id as the indexes hold it (lua/indexes.ts): a lowercase UUID as its 16 bytes. */
export function indexMember(sessionId: string): Buffer {
  return Buffer.from(sessionId.replace(/-/g, ""), "hex");
}

const SINGLE = new Partitioning(1);

/** The key names of one tenant under one prefix. */
export class RedisKeys {
  private readonly tp: string;

  constructor(
    readonly prefix: string,
    readonly tenant: string,
    readonly partitions: Partitioning = SINGLE,
  ) {
    this.tp = `${prefix}${encodeTenant(tenant)}:`;
  }

  record(sessionId: string): string {
    const q = this.partitions.tags[this.partitions.ofSession(sessionId)] as string;
    return q === "" ? `${this.tp}{${sessionId}}` : `${this.tp}${q}${sessionId}`;
  }
  data(sessionId: string): string {
    return `${this.record(sessionId)}${DATA}`;
  }
  archive(sessionId: string): string {
    return `${this.record(sessionId)}${ARCHIVE}`;
  }
  requestId(requestId: string, partition = 0): string {
    return `${this.tp}${this.tag(partition)}${REQUEST_ID}${requestId}`;
  }
  /** The claim of an unguarded request id with several partitions (lua/claim.ts), in its own partition. */
  requestClaim(requestId: string): string {
    return `${this.tp}${this.tag(this.partitions.ofRequestId(this.tenant, requestId))}${REQUEST_CLAIM}${requestId}`;
  }
  /** The user's index of the earlier layout (text members; read until it empties). */
  user(userId: string): string {
    return `${this.tp}${this.tag(this.partitions.ofUser(this.tenant, userId))}${USER}${userId}`;
  }
  /** The data source's index of the earlier layout (one ZSET, text members; read until it empties). */
  dataSource(dataSource: string, partition = 0): string {
    return `${this.tp}${this.tag(partition)}${DATA_SOURCE}${dataSource}`;
  }
  /** Every live session of the tenant in a partition, by expire time: the unfiltered listing's index of the earlier layout (read until it empties). */
  all(partition = 0): string {
    return `${this.tp}${this.tag(partition)}${ALL}`;
  }
  /** The user's sessions by expire time, members 16-byte session ids (see the layout above). */
  userIndex(userId: string): string {
    return `${this.tp}${this.tag(this.partitions.ofUser(this.tenant, userId))}${USER_INDEX}${userId}`;
  }
  /** The directory of a data source's bucketed index: member and score the lower bound of each bucket. */
  dataSourceDirectory(dataSource: string, partition = 0): string {
    return `${this.tp}${this.tag(partition)}${SOURCE_DIRECTORY}${dataSource}`;
  }
  /** The bucket of a data source's index whose lower bound is `lowerBound`. */
  dataSourceBucket(dataSource: string, lowerBound: string, partition = 0): string {
    return `${this.tp}${this.tag(partition)}${SOURCE_BUCKET}${lowerBound}:${dataSource}`;
  }
  /** The directory of the tenant-wide bucketed index in a partition. */
  allDirectory(partition = 0): string {
    return `${this.tp}${this.tag(partition)}${ALL_DIRECTORY}`;
  }
  /** A bucket of the tenant-wide index. */
  allBucket(lowerBound: string, partition = 0): string {
    return `${this.tp}${this.tag(partition)}${ALL_BUCKET}${lowerBound}`;
  }
  counters(partition = 0): string {
    return `${this.tp}${this.tag(partition)}${COUNTERS}`;
  }
  /** Id of the tenant's newest event in a partition: the one position its watchers may be shown. */
  lastEvent(partition = 0): string {
    return `${this.tp}${this.tag(partition)}${TENANT_LAST_EVENT}`;
  }
  /** A partition's due queue (shared by all tenants). */
  due(partition = 0): string {
    return dueKey(this.prefix, this.tag(partition));
  }
  /** A partition's event log generation (shared by all tenants). */
  generation(partition = 0): string {
    return generationKey(this.prefix, this.tag(partition));
  }
  /** A partition's event log (shared by all tenants). */
  events(partition = 0): string {
    return eventLogKey(this.prefix, this.tag(partition));
  }
  dueMember(dataSource: string): string {
    return `${encodeTenant(this.tenant)}\n${dataSource}`;
  }
  private tag(partition: number): string {
    const q = this.partitions.tags[partition];
    if (q === undefined) throw new Error("no such partition");
    return q;
  }
}

/** A partition's due queue under a prefix (shared by all tenants); tag "" with one partition. */
export function dueKey(prefix: string, tag = ""): string {
  return `${prefix}${tag}${DUE}`;
}

/** A partition's due wake-ups: a write that lowered the due queue's head appends to it (lua/indexes.ts due_lower). */
export function dueWakeKey(prefix: string, tag = ""): string {
  return `${prefix}${tag}${DUE_WAKE}`;
}

/** A partition's event log under a prefix (shared by all tenants). */
export function eventLogKey(prefix: string, tag = ""): string {
  return `${prefix}${tag}${EVENTS}`;
}

/** A partition's replicated no-op write before a WAIT on a cluster (replica-wait.ts advanceWrite). */
export function waitAdvanceKey(prefix: string, tag: string): string {
  return `${prefix}${tag}${WAIT_ADVANCE}`;
}

/** A partition's event log generation under a key prefix (see K_GEN in KEY_LAYOUT_LUA). */
export function generationKey(prefix: string, tag = ""): string {
  return `${prefix}${tag}${GENERATION}`;
}

/** A partition's copy of the sealed partition secret (src/store/partition-secret.ts). */
export function partitionSecretKey(prefix: string, tag: string): string {
  return `${prefix}${tag}${PARTITION_SECRET}`;
}
