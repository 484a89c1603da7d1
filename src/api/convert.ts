/**
 * Protobuf messages ↔ session domain types. No validation here (see
 * validate.ts): these functions assume their input was already checked.
 */
import { create, fromJson, protoInt64, toJson, type JsonValue, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, TimestampSchema, ValueSchema, type Timestamp, type Value } from "@bufbuild/protobuf/wkt";
import {
  AccessLevel as ProtoAccessLevel,
  EventType,
  SessionStatus as ProtoSessionStatus,
  type GetSessionMetricsResponseSchema,
  type Session,
  SessionSchema,
  type SessionEvent as ProtoSessionEvent,
  SessionEventSchema,
} from "../../gen/session/v1/session_pb.js";
import type { AccessLevel, SessionStatus } from "../domain/model.js";
import type { SessionMetrics } from "../session/session-manager.js";
import type { SessionView } from "../session/session-view.js";
import type { SessionEventType } from "../store/store.js";
import type { WatchItem, WatchItemType } from "../streaming/watch-sessions.js";

const ACCESS_LEVEL_TO_PROTO: Readonly<Record<AccessLevel, ProtoAccessLevel>> = {
  read: ProtoAccessLevel.READ,
  write: ProtoAccessLevel.WRITE,
  admin: ProtoAccessLevel.ADMIN,
};

/** The names GetSessionMetrics keys its per-level map with. */
const ACCESS_LEVEL_NAMES: Readonly<Record<AccessLevel, string>> = {
  read: "READ",
  write: "WRITE",
  admin: "ADMIN",
};

const STATUS_TO_PROTO: Readonly<Record<SessionStatus, ProtoSessionStatus>> = {
  active: ProtoSessionStatus.ACTIVE,
  expired: ProtoSessionStatus.EXPIRED,
  closed: ProtoSessionStatus.CLOSED,
};

const EVENT_TYPE_TO_PROTO: Readonly<Record<WatchItemType, EventType>> = {
  created: EventType.CREATED,
  updated: EventType.UPDATED,
  extended: EventType.EXTENDED,
  closed: EventType.CLOSED,
  expired: EventType.EXPIRED,
  data_changed: EventType.DATA_CHANGED,
  snapshot: EventType.SNAPSHOT,
  heartbeat: EventType.HEARTBEAT,
};

export function accessLevelToProto(level: AccessLevel): ProtoAccessLevel {
  return ACCESS_LEVEL_TO_PROTO[level];
}

/** undefined for UNSPECIFIED and for numbers outside the enum. */
export function accessLevelFromProto(level: ProtoAccessLevel): AccessLevel | undefined {
  switch (level) {
    case ProtoAccessLevel.READ:
      return "read";
    case ProtoAccessLevel.WRITE:
      return "write";
    case ProtoAccessLevel.ADMIN:
      return "admin";
    default:
      return undefined;
  }
}

/** The lifecycle event types a watch may filter on; undefined for any other number. */
export function eventTypeFromProto(type: EventType): SessionEventType | undefined {
  switch (type) {
    case EventType.CREATED:
      return "created";
    case EventType.UPDATED:
      return "updated";
    case EventType.EXTENDED:
      return "extended";
    case EventType.CLOSED:
      return "closed";
    case EventType.EXPIRED:
      return "expired";
    case EventType.DATA_CHANGED:
      return "data_changed";
    default:
      return undefined;
  }
}

/**
 * The Session message of a view, built as the object create(SessionSchema, ...) makes (the same fields, in its
 * order, an end time absent until the session ended; test/session-encoding.test.ts compares them) without
 * create()'s walk of the schema: every unary call that answers with a session makes one.
 */
export function sessionToProto(view: SessionView): Session {
  const accessLevel = accessLevelToProto(view.accessLevel);
  const status = STATUS_TO_PROTO[view.status];
  const createTime = timestamp(view.createTime);
  const expireTime = timestamp(view.expireTime);
  const lastAccessTime = timestamp(view.lastAccessTime);
  const version = BigInt(view.version);
  // end_time is documented as set only once the session has ended.
  if (view.endTime === 0) {
    return { $typeName: SESSION, sessionId: view.sessionId, userId: view.userId, dataSource: view.dataSource, accessLevel, status, createTime, expireTime, lastAccessTime, metadata: view.metadata, version };
  }
  const endTime = timestamp(view.endTime);
  return { $typeName: SESSION, sessionId: view.sessionId, userId: view.userId, dataSource: view.dataSource, accessLevel, status, createTime, expireTime, lastAccessTime, endTime, metadata: view.metadata, version };
}

const SESSION = SessionSchema.typeName;
const TIMESTAMP = TimestampSchema.typeName;

/** timestampFromMs's message, built directly. */
function timestamp(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { $typeName: TIMESTAMP, seconds: protoInt64.parse(seconds), nanos: (ms - seconds * 1000) * 1000000 };
}

export function valueToProto(value: JsonValue): Value {
  return fromJson(ValueSchema, value);
}

/** Throws for a Value with no kind or a non-finite number (the caller maps that to invalid_argument). */
export function valueFromProto(value: Value): JsonValue {
  return toJson(ValueSchema, value);
}

export function metricsToProto(metrics: SessionMetrics): MessageInitShape<typeof GetSessionMetricsResponseSchema> {
  const byLevel: [string, bigint][] = [];
  for (const level of ["read", "write", "admin"] as const) {
    const count = metrics.activeByAccessLevel[level];
    if (count !== undefined && count > 0) byLevel.push([ACCESS_LEVEL_NAMES[level], BigInt(count)]);
  }
  // Data source names are chosen by callers: Object.fromEntries keeps a source
  // named "__proto__" an ordinary key.
  const byDataSource = Object.entries(metrics.activeByDataSource)
    .filter(([, count]) => count > 0)
    .map(([source, count]): [string, bigint] => [source, BigInt(count)]);
  return {
    totalSessions: BigInt(metrics.total),
    activeSessions: BigInt(metrics.active),
    expiredSessions: BigInt(metrics.expired),
    closedSessions: BigInt(metrics.closed),
    activeByAccessLevel: Object.fromEntries(byLevel),
    activeByDataSource: Object.fromEntries(byDataSource),
    averageDuration: durationFromMs(Math.round(metrics.averageDurationMs)),
  };
}

export function watchItemToProto(item: WatchItem): ProtoSessionEvent {
  return create(SessionEventSchema, {
    type: EVENT_TYPE_TO_PROTO[item.type],
    session: item.session === undefined ? undefined : sessionToProto(item.session),
    eventTime: timestampFromMs(item.time),
    cursor: item.cursor,
    dataKeys: [...item.dataKeys],
  });
}
