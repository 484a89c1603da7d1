/**
 * Correlation ids for log lines: the trace id of a W3C `traceparent` header
 * (https://www.w3.org/TR/trace-context/#traceparent-header), and a request id
 * taken from `x-request-id` or generated, which the server echoes back so a
 * caller without tracing can still find its call in the logs.
 *
 * Both are parsed strictly: a header that does not match its format is
 * ignored rather than logged, so a client cannot write arbitrary text (or
 * unbounded amounts of it) into the log through them.
 */
import { randomUUID } from "node:crypto";
import { createContextKey } from "@connectrpc/connect";

export const TRACEPARENT_HEADER = "traceparent";
export const REQUEST_ID_HEADER = "x-request-id";

/** version "-" trace-id "-" parent-id "-" trace-flags, lowercase hex. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ALL_ZERO = /^0+$/;

/**
 * The trace id of a traceparent header, or undefined when the header is absent
 * or invalid. Version ff is forbidden; version 00 has exactly four fields;
 * later versions may append fields, which are ignored (as the spec asks).
 */
export function traceIdOf(traceparent: string | null | undefined): string | undefined {
  if (traceparent === null || traceparent === undefined) return undefined;
  const match = TRACEPARENT.exec(traceparent.trim());
  if (match === null) return undefined;
  const [, version, traceId, parentId, , rest] = match;
  if (version === undefined || traceId === undefined || parentId === undefined) return undefined;
  if (version === "ff") return undefined;
  if (version === "00" && rest !== undefined) return undefined;
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(parentId)) return undefined;
  return traceId;
}

/** Up to 128 characters from a conservative set (what UUIDs, ULIDs and most proxies' ids use). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's x-request-id when it is a sane token, else a new UUID. */
export function requestIdOf(header: string | null | undefined): string {
  if (header !== null && header !== undefined && REQUEST_ID.test(header)) return header;
  return randomUUID();
}

/** The correlation ids of one call, set by the RPC interceptor for the code inside it (audit records). */
export interface RpcIds {
  readonly requestId: string;
  /** The call's trace: its span's when tracing is on, else the caller's traceparent's. */
  readonly traceId?: string;
  /** The call's server span, when tracing is on. */
  readonly spanId?: string;
}

export const RPC_IDS = createContextKey<RpcIds | undefined>(undefined, { description: "sessiond rpc ids" });
