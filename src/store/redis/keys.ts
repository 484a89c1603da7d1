/**
 * Redis key layout of the session store. The Lua prelude (lua/prelude.lua)
 * builds the same names inside scripts; these functions exist so tests, the
 * memory benchmark and operators can find the keys of a session.
 *
 * With key prefix P (default "sd:") and encoded tenant T (see encodeTenant):
 *
 * | key                   | type   | contents                                                  | expires at                    |
 * |-----------------------|--------|-----------------------------------------------------------|-------------------------------|
 * | `P T:{sid}`           | HASH   | live record: u user, d data source, l level, c create,     | expire + grace                |
 * |                       |        | e expire, a last access, m metadata, v version, r request id (if any) |                    |
 * | `P T:{sid}:d`         | HASH   | session data, key → value                                  | expire + grace                |
 * | `P T:{sid}:a`         | STRING | archived final state, MessagePack: u d l c e a m v s t     | end + archive retention       |
 * |                       |        | (the record fields + s status, t end; see write_archive)   |                               |
 * | `P T:{sid}:x`         | STRING | shadow key, value 1 (a shared integer: no value bytes);    | expire time (deleted when the |
 * |                       |        | its `expired` keyspace notification wakes the scheduler   | session ends)                 |
 * | `P T:r:<requestId>`   | STRING | session id created for that idempotency key                | expire + grace                |
 * | `P T:u:<userId>`      | ZSET   | live sessions of the user, score = expire time             | max(member expire) + grace    |
 * | `P T:s:<dataSource>`  | ZSET   | live sessions of the data source, score = expire time      | max(member expire) + grace    |
 * | `P T:m`               | HASH   | counters: total, active, expired, closed, dsum,            | never (a few fields per tenant) |
 * |                       |        | l:<level> and s:<dataSource> live gauges (deleted at 0)    |                               |
 * | `P ev`                | STREAM | event log of every tenant (see emit() in lua/prelude.ts);  | never (trimmed by count and   |
 * |                       |        | the entry id is the watch cursor                           | age: WATCH_RETENTION*)        |
 * | `P g`                 | STRING | the event log's generation: a time (ms) before its first   | never (Redis data loss        |
 * |                       |        | event; a cursor older than it is of a lost log             | deletes it: a new generation) |
 * | `P dx`                | ZSET   | due queue: member `T\n<dataSource>`, score = a lower bound | never (one member per         |
 * |                       |        | of the earliest expire time in that data-source index      | non-empty data-source index)  |
 *
 * Why this shape:
 * - Every key of one session carries the hash tag `{sid}`, so record, data and
 *   archive share a slot. The scripts still touch index, counter and due-queue
 *   keys that live elsewhere, so the store needs a single Redis primary.
 * - Every key of a session expires with it (grace included), and index keys
 *   outlive their longest member by the grace, so nothing leaks if the expiry
 *   scheduler is down for longer than the grace.
 * - There is no tenant-wide "all sessions" index: it cost ~120 B per session.
 *   The data-source indexes partition a tenant's sessions, so an unfiltered
 *   listing merges them (their names are the s:<dataSource> counter fields).
 * - Nothing is ever found with SCAN or KEYS.
 *
 * The tenant is percent-encoded so that it cannot contain ":", "{", "}" or a
 * newline, which keeps every key and due-queue member unambiguous.
 */

export const DEFAULT_KEY_PREFIX = "sd:";

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
    return `${this.tp}{${sessionId}}:d`;
  }
  archive(sessionId: string): string {
    return `${this.tp}{${sessionId}}:a`;
  }
  shadow(sessionId: string): string {
    return `${this.tp}{${sessionId}}:x`;
  }
  requestId(requestId: string): string {
    return `${this.tp}r:${requestId}`;
  }
  user(userId: string): string {
    return `${this.tp}u:${userId}`;
  }
  dataSource(dataSource: string): string {
    return `${this.tp}s:${dataSource}`;
  }
  counters(): string {
    return `${this.tp}m`;
  }
  /** The global due queue (shared by all tenants). */
  due(): string {
    return `${this.prefix}dx`;
  }
  /** The event log's generation (shared by all tenants). */
  generation(): string {
    return `${this.prefix}g`;
  }
  /** The event log (shared by all tenants). */
  events(): string {
    return `${this.prefix}ev`;
  }
  dueMember(dataSource: string): string {
    return `${encodeTenant(this.tenant)}\n${dataSource}`;
  }
}
