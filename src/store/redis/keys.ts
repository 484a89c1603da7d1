/**
 * Redis key layout of the session store, the one place it is written down:
 * RedisKeys builds the names in TypeScript, KEY_LAYOUT_LUA builds them inside
 * the scripts (lua/prelude.ts includes it), and sessionKeyMatcher and countersKeyMatcher parse them
 * (keyspace notifications, `npm run reencrypt`).
 *
 * With key prefix P (default "sd:") and encoded tenant T (see encodeTenant):
 *
 * | key                   | type   | contents                                                  | expires at                    |
 * |-----------------------|--------|-----------------------------------------------------------|-------------------------------|
 * | `P T:{sid}`           | HASH   | live record: u user, d data source, l level, c create,     | expire + grace                |
 * |                       |        | e expire, a last access, m metadata, v version, r request id (if any), |                   |
 * |                       |        | b data bytes; encryption on: U sealed user, D sealed data source, mt metadata tag |        |
 * | `P T:{sid}:d`         | HASH   | session data, key → value (encryption on: key token →      | expire + grace                |
 * |                       |        | `<sealed key name> <sealed value>`)                        |                               |
 * | `P T:{sid}:a`         | STRING | archived final state, MessagePack: u d l c e a m v s t U D mt | end + archive retention    |
 * |                       |        | (the record fields + s status, t end; see write_archive)   |                               |
 * | `P T:{sid}:x`         | STRING | shadow key, value 1 (a shared integer: no value bytes);    | expire time (deleted when the |
 * |                       |        | its `expired` keyspace notification wakes the scheduler   | session ends)                 |
 * | `P T:r:<requestId>`   | STRING | session id created for that idempotency key (a guarded     | expire + grace                |
 * |                       |        | create's key is `u:<userId>\n<requestId>`, see store.ts)   |                               |
 * | `P T:u:<userId>`      | ZSET   | live sessions of the user, score = expire time             | max(member expire) + grace    |
 * | `P T:s:<dataSource>`  | ZSET   | live sessions of the data source, score = expire time      | max(member expire) + grace    |
 * | `P T:all`             | ZSET   | every live session of the tenant, score = expire time      | max(member expire) + grace    |
 * | `P T:m`               | HASH   | counters: total, active, expired, closed, dsum,            | never (a few fields per tenant) |
 * |                       |        | l:<level> and s:<dataSource> live gauges (deleted at 0),   |                               |
 * |                       |        | nds the number of live data sources (the s: fields);       |                               |
 * |                       |        | encryption on: n:<dataSource> its sealed name (with s:)    |                               |
 * | `P T:ev`              | STRING | id of the tenant's newest event: its watchers' heartbeat   | never (one per tenant)        |
 * |                       |        | cursors never show the log's position (other tenants' writes) |                          |
 * | `P ev`                | STREAM | event log of every tenant (see emit() in lua/prelude.ts);  | never (trimmed by count and   |
 * |                       |        | the entry id is the watch cursor                           | age: WATCH_RETENTION*)        |
 * | `P probe:<uuid>`       | STRING | keyspace notification probe (keyspace-expiry.ts)           | 1 ms                          |
 * | `P g`                 | STRING | the event log's generation: a time (ms) before its first   | never (Redis data loss        |
 * |                       |        | event; a cursor older than it is of a lost log             | deletes it: a new generation) |
 * | `P dx`                | ZSET   | due queue: member `T\n<dataSource>`, score = a lower bound | never (one member per         |
 * |                       |        | of the earliest expire time in that data-source index      | non-empty data-source index)  |
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
 * - Every key of one session carries the hash tag `{sid}`, so record, data and
 *   archive share a slot. The scripts still touch index, counter and due-queue
 *   keys that live elsewhere, so the store needs a single Redis primary.
 * - Every key of a session expires with it (grace included), and index keys
 *   outlive their longest member by the grace, so nothing leaks if the expiry
 *   scheduler is down for longer than the grace.
 * - The tenant-wide index `P T:all` (about 100 B per session) makes an
 *   unfiltered listing one range read bounded by its page, whatever the
 *   number of data sources; merging the data-source indexes instead cost a
 *   read per data source per page.
 * - Nothing is ever found with SCAN or KEYS.
 *
 * The tenant is percent-encoded so that it cannot contain ":", "{", "}" or a
 * newline, which keeps every key and due-queue member unambiguous.
 */

export const DEFAULT_KEY_PREFIX = "sd:";

/** Suffixes of a session's keys after `P T:{sid}`. */
const DATA = ":d";
const ARCHIVE = ":a";
const SHADOW = ":x";
/** Per-tenant keys after `P T:`. */
const REQUEST_ID = "r:";
const USER = "u:";
const DATA_SOURCE = "s:";
const ALL = "all";
const COUNTERS = "m";
const TENANT_LAST_EVENT = "ev";
/** Keys shared by every tenant, after `P`. */
const DUE = "dx";
const GENERATION = "g";
const EVENTS = "ev";

/**
 * The same names for the Lua scripts: P is the key prefix (ARGV[1]), T an
 * encoded tenant, tp = tenant_prefix(T).
 */
export const KEY_LAYOUT_LUA = String.raw`
local K_DUE = P .. '${DUE}'
-- The event log: one stream for every tenant (see emit).
local K_EV = P .. '${EVENTS}'
-- The event log's generation: a time (ms) before its first event. Redis data
-- loss (a restart without persistence, FLUSHALL, a failover to an empty
-- replica) deletes it with everything else; the next script makes a new one,
-- later than every event of the lost log, so a cursor older than the
-- generation is known to be of another log (read_events: out_of_range).
local K_GEN = P .. '${GENERATION}'
local function tenant_prefix(T) return P .. T .. ':' end
local function k_rec(tp, sid) return tp .. '{' .. sid .. '}' end
local function k_data(tp, sid) return tp .. '{' .. sid .. '}${DATA}' end
local function k_arch(tp, sid) return tp .. '{' .. sid .. '}${ARCHIVE}' end
local function k_shadow(tp, sid) return tp .. '{' .. sid .. '}${SHADOW}' end
local function k_req(tp, rid) return tp .. '${REQUEST_ID}' .. rid end
local function k_user(tp, uid) return tp .. '${USER}' .. uid end
local function k_src(tp, ds) return tp .. '${DATA_SOURCE}' .. ds end
local function k_all(tp) return tp .. '${ALL}' end
local function k_ctr(tp) return tp .. '${COUNTERS}' end
local function k_ev_last(tp) return tp .. '${TENANT_LAST_EVENT}' end
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

/** Parses the name of a session's key under `prefix`; undefined for any other key. */
export function sessionKeyMatcher(prefix: string): (key: string) => SessionKeyName | undefined {
  const pattern = new RegExp(`^${escapeRegExp(prefix)}([^:{}]+):\\{(${UUID})\\}(${[DATA, ARCHIVE, SHADOW].join("|")})?$`);
  return (key) => {
    const match = pattern.exec(key);
    if (match === null) return undefined;
    const kind = KINDS[match[3] ?? ""];
    return kind === undefined ? undefined : { tenant: decodeTenant(match[1] as string), sessionId: match[2] as string, kind };
  };
}

/** Parses the name of a tenant's counters key under `prefix` into the tenant; undefined for any other key. */
export function countersKeyMatcher(prefix: string): (key: string) => string | undefined {
  const pattern = new RegExp(`^${escapeRegExp(prefix)}([^:{}]+):${COUNTERS}$`);
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

/** The key names of one tenant under one prefix. */
export class RedisKeys {
  private readonly tp: string;

  constructor(
    readonly prefix: string,
    readonly tenant: string,
  ) {
    this.tp = `${prefix}${encodeTenant(tenant)}:`;
  }

  record(sessionId: string): string {
    return `${this.tp}{${sessionId}}`;
  }
  data(sessionId: string): string {
    return `${this.record(sessionId)}${DATA}`;
  }
  archive(sessionId: string): string {
    return `${this.record(sessionId)}${ARCHIVE}`;
  }
  shadow(sessionId: string): string {
    return `${this.record(sessionId)}${SHADOW}`;
  }
  requestId(requestId: string): string {
    return `${this.tp}${REQUEST_ID}${requestId}`;
  }
  user(userId: string): string {
    return `${this.tp}${USER}${userId}`;
  }
  dataSource(dataSource: string): string {
    return `${this.tp}${DATA_SOURCE}${dataSource}`;
  }
  /** Every live session of the tenant, by expire time: the unfiltered listing's index. */
  all(): string {
    return `${this.tp}${ALL}`;
  }
  counters(): string {
    return `${this.tp}${COUNTERS}`;
  }
  /** Id of the tenant's newest event: the one position its watchers may be shown. */
  lastEvent(): string {
    return `${this.tp}${TENANT_LAST_EVENT}`;
  }
  /** The global due queue (shared by all tenants). */
  due(): string {
    return dueKey(this.prefix);
  }
  /** The event log's generation (shared by all tenants). */
  generation(): string {
    return `${this.prefix}${GENERATION}`;
  }
  /** The event log (shared by all tenants). */
  events(): string {
    return eventLogKey(this.prefix);
  }
  dueMember(dataSource: string): string {
    return `${encodeTenant(this.tenant)}\n${dataSource}`;
  }
}

/** The due queue under a prefix (shared by all tenants). */
export function dueKey(prefix: string): string {
  return `${prefix}${DUE}`;
}

/** A throwaway key whose expiry proves keyspace notifications arrive (keyspace-expiry.ts). */
export function probeKey(prefix: string, id: string): string {
  return `${prefix}probe:${id}`;
}

/** The event log under a prefix (shared by all tenants). */
export function eventLogKey(prefix: string): string {
  return `${prefix}${EVENTS}`;
}

/** The event log's generation under a key prefix (see K_GEN in KEY_LAYOUT_LUA). */
export function generationKey(prefix: string): string {
  return `${prefix}${GENERATION}`;
}
