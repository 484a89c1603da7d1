/**
 * Request validation: every field of every request is checked here, before
 * anything is read or written, and turned into the domain input of the
 * SessionManager. A bad field raises SessionError("invalid_argument") whose
 * message starts with the field's proto name, e.g. "session_id: must be a UUID".
 *
 * Checks that need the encoded form (metadata and value sizes) are made by the
 * SessionManager, which does the encoding, still before any write.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { Duration, Timestamp, Value } from "@bufbuild/protobuf/wkt";
import {
  AccessLevel as ProtoAccessLevel,
  EventType,
  type CreateSessionRequest,
  type ListEndedSessionsRequest,
  type ListSessionsRequest,
  type UpdateSessionRequest,
  type WatchSessionsRequest,
} from "../../gen/session/v1/session_pb.js";
import type { LimitsConfig, TtlConfig } from "../config/config.js";
import { SessionError } from "../domain/errors.js";
import type { CreateSessionParams, UpdateSessionParams } from "../session/session-manager.js";
import type { ListCursor, ListFilter } from "../store/store.js";
import type { SessionEventType } from "../store/store.js";
import type { WatchFilter } from "../streaming/watch-sessions.js";
import { accessLevelFromProto, eventTypeFromProto, valueFromProto } from "./convert.js";
import type { EndedFilter, EndedPosition } from "../domain/ended-archive.js";
import { decodeEndedPageToken, decodePageToken } from "./page-token.js";

/** Longest user_id and data_source, in characters. */
export const MAX_NAME_LENGTH = 256;
export const MAX_REQUEST_ID_LENGTH = 128;
/** Most session_ids one watch may name. */
export const MAX_WATCH_SESSION_IDS = 1000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/**
 * Empty, or letters, marks, numbers, punctuation, symbols and the plain space:
 * no control (CR, LF, NUL), format (zero-width, bidi), line/paragraph
 * separator, surrogate, private-use or unassigned code points. A request id is
 * an idempotency token, not text to display, so nothing invisible belongs in it.
 */
const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S} ]*$/u;
/** C0 and C1 control characters and DEL. */
const CONTROL = /\p{Cc}/u;

export function invalid(field: string, problem: string): SessionError {
  return new SessionError("invalid_argument", `${field}: ${problem}`, field);
}

/** A canonical UUID in any case, returned in lowercase (the form the store uses). */
export function validateSessionId(value: string, field = "session_id"): string {
  if (!UUID.test(value)) throw invalid(field, "must be a UUID (8-4-4-4-12 hexadecimal digits)");
  return value.toLowerCase();
}

/** Length in characters (code points), so a limit does not depend on UTF-16 details. */
function characters(value: string): number {
  let n = 0;
  for (const _ of value) n++;
  return n;
}

/** 1..maxLength characters, no control characters. */
export function validateName(value: string, field: string, maxLength = MAX_NAME_LENGTH): string {
  if (value === "") throw invalid(field, "is required");
  // A string has at most as many code points as UTF-16 units: only a long one needs counting.
  if (value.length > maxLength && characters(value) > maxLength) throw invalid(field, `must be at most ${maxLength} characters`);
  if (CONTROL.test(value)) throw invalid(field, "must not contain control characters");
  return value;
}

/** An optional filter: empty means "no filter", anything else follows the name rules. */
export function validateOptionalName(value: string, field: string): string | undefined {
  return value === "" ? undefined : validateName(value, field);
}

/** Absent: undefined (the session layer applies the default TTL). Otherwise a valid, non-negative Duration within [minMs, maxMs]. */
export function validateTtl(ttl: Duration | undefined, config: TtlConfig, field = "ttl"): number | undefined {
  if (ttl === undefined) return undefined;
  if (!Number.isInteger(ttl.nanos) || ttl.nanos < 0 || ttl.nanos > 999_999_999) {
    throw invalid(field, "nanos must be from 0 to 999999999");
  }
  if (ttl.seconds < 0n) throw invalid(field, "must not be negative");
  const maxSeconds = BigInt(Math.ceil(config.maxMs / 1000));
  const ms = ttl.seconds > maxSeconds ? Number.POSITIVE_INFINITY : Number(ttl.seconds) * 1000 + Math.floor(ttl.nanos / 1_000_000);
  if (ms < config.minMs || ms > config.maxMs) {
    throw invalid(field, `must be from ${formatMs(config.minMs)} to ${formatMs(config.maxMs)}`);
  }
  return ms;
}

export function validateDataKey(key: string, limits: LimitsConfig): string {
  return validateName(key, "key", limits.maxDataKeyLength);
}

/** A present google.protobuf.Value that is valid JSON. Its size is checked by the manager. */
export function validateDataValue(value: Value | undefined): JsonValue {
  if (value === undefined || value.kind.case === undefined) throw invalid("value", "is required");
  try {
    return valueFromProto(value);
  } catch {
    // protobuf-es refuses NaN, Infinity and nested Values without a kind.
    throw invalid("value", "must be valid JSON (finite numbers, every nested value set)");
  }
}

export function validateCreate(request: CreateSessionRequest, ttl: TtlConfig): CreateSessionParams {
  const userId = validateName(request.userId, "user_id");
  const dataSource = validateName(request.dataSource, "data_source");
  const accessLevel = request.accessLevel === ProtoAccessLevel.UNSPECIFIED ? "read" : accessLevelFromProto(request.accessLevel);
  if (accessLevel === undefined) throw invalid("access_level", "must be READ, WRITE or ADMIN");
  const ttlMs = validateTtl(request.ttl, ttl);
  if (request.requestId.length > MAX_REQUEST_ID_LENGTH && characters(request.requestId) > MAX_REQUEST_ID_LENGTH) {
    throw invalid("request_id", `must be at most ${MAX_REQUEST_ID_LENGTH} characters`);
  }
  if (!PRINTABLE.test(request.requestId)) {
    throw invalid("request_id", "must be printable characters only (no control, format, separator or unassigned characters other than space)");
  }
  return {
    userId,
    dataSource,
    accessLevel,
    ...(ttlMs === undefined ? {} : { ttlMs }),
    ...(request.metadata === undefined ? {} : { metadata: request.metadata }),
    requestId: request.requestId,
  };
}

export function validateUpdate(request: UpdateSessionRequest): UpdateSessionParams {
  const params: { -readonly [K in keyof UpdateSessionParams]: UpdateSessionParams[K] } = {};
  if (request.expectedVersion !== undefined) {
    if (request.expectedVersion > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid("expected_version", "is larger than any version");
    params.expectedVersion = Number(request.expectedVersion);
  }
  if (request.mergeMetadata && request.metadata === undefined) {
    throw invalid("merge_metadata", "needs metadata to merge");
  }
  if (request.metadata !== undefined) {
    params.metadata = request.metadata;
    params.mergeMetadata = request.mergeMetadata;
  }
  if (request.accessLevel !== undefined) {
    const level = accessLevelFromProto(request.accessLevel);
    if (level === undefined) throw invalid("access_level", "must be READ, WRITE or ADMIN");
    params.accessLevel = level;
  }
  if (request.dataSource !== undefined) {
    params.dataSource = validateName(request.dataSource, "data_source");
  }
  if (params.metadata === undefined && params.accessLevel === undefined && params.dataSource === undefined) {
    throw invalid("metadata", "nothing to update: set metadata, access_level or data_source");
  }
  return params;
}

export interface ListParams {
  readonly filter: ListFilter;
  readonly pageSize: number;
  readonly after: ListCursor | undefined;
}

export function validateList(request: ListSessionsRequest, limits: LimitsConfig): ListParams {
  const userId = validateOptionalName(request.userId, "user_id");
  const dataSource = validateOptionalName(request.dataSource, "data_source");
  if (!Number.isInteger(request.pageSize) || request.pageSize < 0 || request.pageSize > limits.maxPageSize) {
    throw invalid("page_size", `must be from 0 (the default, ${limits.defaultPageSize}) to ${limits.maxPageSize}`);
  }
  return {
    filter: { ...(userId === undefined ? {} : { userId }), ...(dataSource === undefined ? {} : { dataSource }) },
    pageSize: request.pageSize === 0 ? limits.defaultPageSize : request.pageSize,
    after: decodePageToken(request.pageToken),
  };
}

export interface ListEndedParams {
  readonly filter: EndedFilter;
  readonly pageSize: number;
  readonly after: EndedPosition | undefined;
}

/** Latest time a time-range bound may name: 9999-12-31T23:59:59Z (what RFC 3339 can write). */
const MAX_TIMESTAMP_SECONDS = 253_402_300_799n;

/** An optional Timestamp as ms since the epoch; within 1970..9999, nanos in range. */
function validateOptionalTimestamp(value: Timestamp | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value.nanos) || value.nanos < 0 || value.nanos > 999_999_999) throw invalid(field, "nanos must be from 0 to 999999999");
  if (value.seconds < 0n || value.seconds > MAX_TIMESTAMP_SECONDS) throw invalid(field, "must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z");
  return Number(value.seconds) * 1000 + Math.floor(value.nanos / 1_000_000);
}

export function validateListEnded(request: ListEndedSessionsRequest, limits: LimitsConfig): ListEndedParams {
  const userId = validateOptionalName(request.userId, "user_id");
  const dataSource = validateOptionalName(request.dataSource, "data_source");
  const endedAfter = validateOptionalTimestamp(request.endedAfter, "ended_after");
  const endedBefore = validateOptionalTimestamp(request.endedBefore, "ended_before");
  if (endedAfter !== undefined && endedBefore !== undefined && endedBefore <= endedAfter) {
    throw invalid("ended_before", "must be later than ended_after");
  }
  if (!Number.isInteger(request.pageSize) || request.pageSize < 0 || request.pageSize > limits.maxPageSize) {
    throw invalid("page_size", `must be from 0 (the default, ${limits.defaultPageSize}) to ${limits.maxPageSize}`);
  }
  return {
    filter: {
      ...(userId === undefined ? {} : { userId }),
      ...(dataSource === undefined ? {} : { dataSource }),
      ...(endedAfter === undefined ? {} : { endedAfter }),
      ...(endedBefore === undefined ? {} : { endedBefore }),
    },
    pageSize: request.pageSize === 0 ? limits.defaultPageSize : request.pageSize,
    after: decodeEndedPageToken(request.pageToken),
  };
}

export interface WatchParams {
  readonly filter: WatchFilter;
  readonly sendInitialSnapshot: boolean;
  /** Non-empty when the client asked to resume (checked by the watch: INVALID_ARGUMENT when malformed, OUT_OF_RANGE when too old). */
  readonly resumeCursor: string;
}

export function validateWatch(request: WatchSessionsRequest): WatchParams {
  const userId = validateOptionalName(request.userId, "user_id");
  const dataSource = validateOptionalName(request.dataSource, "data_source");
  if (request.sessionIds.length > MAX_WATCH_SESSION_IDS) {
    throw invalid("session_ids", `must name at most ${MAX_WATCH_SESSION_IDS} sessions`);
  }
  const sessionIds = new Set(request.sessionIds.map((id) => validateSessionId(id, "session_ids")));
  const eventTypes = new Set<SessionEventType>();
  for (const type of request.eventTypes) {
    // SNAPSHOT and HEARTBEAT are accepted and change nothing: heartbeats are
    // always sent, snapshots are asked for with send_initial_snapshot.
    if (type === EventType.SNAPSHOT || type === EventType.HEARTBEAT) continue;
    const domain = eventTypeFromProto(type);
    if (domain === undefined) throw invalid("event_types", "must contain only CREATED, UPDATED, EXTENDED, CLOSED, EXPIRED, DATA_CHANGED, SNAPSHOT or HEARTBEAT");
    eventTypes.add(domain);
  }
  return {
    filter: {
      ...(userId === undefined ? {} : { userId }),
      ...(dataSource === undefined ? {} : { dataSource }),
      ...(sessionIds.size === 0 ? {} : { sessionIds }),
      ...(eventTypes.size === 0 ? {} : { eventTypes }),
    },
    sendInitialSnapshot: request.sendInitialSnapshot,
    resumeCursor: request.resumeCursor,
  };
}

/** "1s", "24h", "1500ms": the way config values are written. */
function formatMs(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
