/**
 * Session domain types, independent of protobuf and of any storage backend.
 *
 * Times are milliseconds since the Unix epoch, taken from the store's clock
 * (Redis TIME for the Redis store) so that every process agrees on them.
 */

/** What may be done with a session's data. Ordered: each level includes the ones before it. */
export type AccessLevel = "read" | "write" | "admin";

/** Whether a session is live or how it ended. */
export type SessionStatus = "active" | "expired" | "closed";

/** The state of one session, as stored. Metadata is opaque serialized JSON at this layer. */
export interface SessionRecord {
  readonly tenant: string;
  readonly sessionId: string;
  readonly userId: string;
  readonly dataSource: string;
  readonly accessLevel: AccessLevel;
  readonly status: SessionStatus;
  readonly createTime: number;
  readonly expireTime: number;
  readonly lastAccessTime: number;
  /** Set once the session has ended; 0 while it is active. */
  readonly endTime: number;
  /** Serialized JSON object (the session layer encodes and decodes it). */
  readonly metadata: string;
  /** Increments on every write to the session, its expiry or its data. */
  readonly version: number;
  /**
   * With encryption on, how the store keeps what the record names (userId and
   * dataSource are then keyed HMACs): only between the store and its sealing
   * layer (src/store/sealed-store.ts), never above it.
   */
  readonly sealed?: SealedFields;
}

/** The sealed forms a record carries through the store (see SessionRecord.sealed). */
export interface SealedFields {
  /** The user id, sealed. */
  readonly user?: string;
  /** The data source, sealed. */
  readonly dataSource?: string;
  /**
   * Keyed MAC of the stored metadata ciphertext, kept in the record and its
   * archive but never in the event log: the one thing an old ciphertext from
   * the log lacks to be served as the record's metadata again.
   */
  readonly metadataTag?: string;
}

const LEVEL_RANK: Readonly<Record<AccessLevel, number>> = { read: 1, write: 2, admin: 3 };

/** True when a session at `level` allows an operation that needs `required` (a guard's check). */
export function levelAllows(level: AccessLevel, required: AccessLevel): boolean {
  return LEVEL_RANK[level] >= LEVEL_RANK[required];
}

/** True when the level allows writing session data. */
export function canWriteData(level: AccessLevel): boolean {
  return level === "write" || level === "admin";
}
