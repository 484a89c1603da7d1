/**
 * The audit log: one JSON record per session operation, authentication
 * failure and authorization failure, on its own pino destination
 * (AUDIT_LOG=stdout | stderr | off | <file path>), separate from the service
 * log so that it can be shipped and retained on its own terms.
 *
 * A record says who (principal, tenant, peer address) did what (operation,
 * session id) with which outcome ("ok" or the status code name). It never
 * holds metadata, data values, data keys' values, tokens or headers: callers
 * of record() pass only the fields of AuditRecord, all of which are
 * identifiers. A record is written synchronously by the end of the event-loop
 * turn in which it was made, with the other lines of that turn on the same
 * descriptor (logging/batched-destination.ts); every exit but a kill or a
 * native crash flushes it, and a kill loses at most the records of that one
 * turn. A file destination is written line by line, synchronously.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import { batchedDescriptor } from "../logging/batched-destination.js";
import { isoTime } from "../logging/iso-time.js";
import { plainRecord, registerPlainRecords } from "../logging/plain-records.js";

/** What was done. Session RPCs map to one operation each (see auth/rpc-scopes.ts). */
export type AuditOperation =
  | "create"
  | "get"
  | "update"
  | "extend"
  | "close"
  | "list"
  /** ListEndedSessions: ended sessions from the archive database. */
  | "list_ended"
  | "metrics"
  | "data_set"
  | "data_get"
  | "data_delete"
  | "data_list"
  | "data_clear"
  | "watch_start"
  | "watch_end"
  /** A session that reached its expire time, archived by this process (its expiry scheduler, or lazily by a call that met it due). */
  | "expire"
  /** A session closed to make room for its user's new one (SESSIONS_PER_USER_POLICY=close_oldest). */
  | "evict"
  /** The event reader found that the store lost its data (the event log was reset); open watches were ended. */
  | "data_loss"
  /** A call that presented no valid credentials. */
  | "authenticate"
  /** A call whose principal lacks the scope the RPC needs. */
  | "authorize"
  /** A health, reflection or other non-session call (audited only when AUTH_PROTECT_OPS is on and it fails). */
  | "ops"
  /** A request refused at the edge before any handler ran: a limit, a malformed or oversized body, a slow client. */
  | "reject";

export interface AuditRecord {
  /** "key:<id>", "jwt:<sub>", "cert:<cn>", "anonymous", or "system" for expiry and evictions; "unknown" before authentication. */
  readonly principal: string;
  /** Absent when no principal was established. */
  readonly tenant?: string;
  /** The user the call acted for (a user-bound principal's, or the one a delegating principal named); absent otherwise. */
  readonly user?: string;
  /** True when `user` was named by a delegating principal (sessiond-act-as): `principal` is the backend. */
  readonly delegated?: boolean;
  readonly operation: AuditOperation;
  /** The RPC, e.g. "session.v1.SessionService/GetSession"; absent for system operations. */
  readonly method?: string;
  readonly sessionId?: string;
  /** "ok" or the gRPC status code name in snake case ("not_found", "unauthenticated", "canceled", "deadline_exceeded", ...). */
  readonly outcome: string;
  /** Remote address of the caller, "ip:port"; absent for system operations. */
  readonly peer?: string;
  /** The call's request id, as on its RPC log line and x-request-id response header; absent for system operations. */
  readonly requestId?: string;
  /** The call's trace id (its span's, or the caller's traceparent's), as on its RPC log line. */
  readonly traceId?: string;
}

/** The correlation fields of a record, from the ids the RPC interceptor put in the call's context (absent outside one). */
export function correlationOf(ids: { readonly requestId: string; readonly traceId?: string } | undefined): Pick<AuditRecord, "requestId" | "traceId"> {
  if (ids === undefined) return {};
  return { requestId: ids.requestId, ...(ids.traceId === undefined ? {} : { traceId: ids.traceId }) };
}

/** Session ids are UUIDs; anything longer is not one and must not make records unbounded. */
const MAX_ID_LENGTH = 64;

export class AuditLog {
  private readonly logger: Logger | undefined;

  /** `logger` undefined: records are dropped (AUDIT_LOG=off). */
  constructor(logger: Logger | undefined) {
    this.logger = logger;
  }

  /** Fields left undefined are not written; sessionId goes last. */
  record(record: AuditRecord): void {
    if (this.logger === undefined) return;
    const { sessionId } = record;
    if (sessionId === undefined || (sessionId.length <= MAX_ID_LENGTH && lastKey(record) === "sessionId")) {
      // The record as given, with no copy (this runs for every session RPC): `audit: true` is a binding of the logger.
      plainRecord(this.logger, "info", record, "audit");
      return;
    }
    const { sessionId: _, ...rest } = record;
    plainRecord(this.logger, "info", { ...rest, sessionId: sessionId.slice(0, MAX_ID_LENGTH) }, "audit");
  }

  /** record(), for a record built with sessionId as its last field (a call's record): its field order is not looked at. */
  recordSessionIdLast(record: AuditRecord): void {
    if (this.logger === undefined) return;
    const { sessionId } = record;
    if (sessionId === undefined || sessionId.length <= MAX_ID_LENGTH) {
      plainRecord(this.logger, "info", record, "audit");
      return;
    }
    this.record(record);
  }

  /** Records an operation the service did by itself (expiry, eviction). */
  system(operation: "expire" | "evict", tenant: string, sessionId: string): void {
    this.record({ principal: "system", tenant, operation, outcome: "ok", sessionId });
  }
}

export interface OpenedAuditLog {
  readonly audit: AuditLog;
  /** Flushes and closes a file destination. */
  close(): void;
}

/** Opens the destination AUDIT_LOG names. A file is appended to (created if missing). */
export function openAuditLog(target: string, destination?: DestinationStream): OpenedAuditLog {
  if (destination !== undefined) return { audit: new AuditLog(auditLogger(destination)), close: () => {} };
  switch (target) {
    case "off":
      return { audit: new AuditLog(undefined), close: () => {} };
    case "stdout":
      return { audit: new AuditLog(auditLogger(batchedDescriptor(1))), close: () => batchedDescriptor(1).flushSync() };
    case "stderr":
      return { audit: new AuditLog(auditLogger(batchedDescriptor(2))), close: () => batchedDescriptor(2).flushSync() };
    default: {
      const file = pino.destination({ dest: target, sync: true, append: true, mkdir: true });
      return {
        audit: new AuditLog(auditLogger(file)),
        close: () => {
          file.flushSync();
          file.end();
        },
      };
    }
  }
}

const AUDIT_BASE = { service: "sessiond", log: "audit", audit: true } as const;

function auditLogger(destination: DestinationStream): Logger {
  return registerPlainRecords(pino({ level: "info", base: AUDIT_BASE, timestamp: isoTime }, destination), destination, AUDIT_BASE);
}

/** The last own key of an object (insertion order), without building the key array. */
function lastKey(record: object): string | undefined {
  let last: string | undefined;
  for (const key in record) last = key;
  return last;
}
