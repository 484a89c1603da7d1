/**
 * The scope each SessionService RPC needs, and the audit operation it is.
 * An RPC missing here needs admin (fail closed when the proto grows).
 */
import type { AuditOperation } from "../audit/audit-log.js";
import type { Scope } from "./principal.js";

export interface RpcPolicy {
  readonly scope: Scope;
  readonly operation: AuditOperation;
}

export const SESSION_RPCS: Readonly<Record<string, RpcPolicy>> = {
  CreateSession: { scope: "write", operation: "create" },
  GetSession: { scope: "read", operation: "get" },
  UpdateSession: { scope: "write", operation: "update" },
  ExtendSession: { scope: "write", operation: "extend" },
  CloseSession: { scope: "write", operation: "close" },
  ListSessions: { scope: "read", operation: "list" },
  SetSessionData: { scope: "write", operation: "data_set" },
  GetSessionData: { scope: "read", operation: "data_get" },
  DeleteSessionData: { scope: "write", operation: "data_delete" },
  ListSessionData: { scope: "read", operation: "data_list" },
  ClearSessionData: { scope: "write", operation: "data_clear" },
  GetSessionMetrics: { scope: "read", operation: "metrics" },
  WatchSessions: { scope: "watch", operation: "watch_start" },
  ListEndedSessions: { scope: "read", operation: "list_ended" },
};

/**
 * Scopes some request fields need on top of their RPC's scope: whoever may
 * write a session must not thereby be able to lift its access level (which
 * guards its data writes). Keyed by RPC, then by the field's JSON name; a
 * field counts when the request sets it (proto3 optional: present). They bind
 * service principals (acting for every user); a call acting for one user is
 * governed by the access level of that user's session instead.
 */
export const FIELD_SCOPES: Readonly<Record<string, Readonly<Record<string, Scope>>>> = {
  UpdateSession: { accessLevel: "access" },
};

/** The extra scopes a request's set fields need (empty for most requests). */
export function fieldScopes(methodName: string, message: object): Scope[] {
  const fields = FIELD_SCOPES[methodName];
  if (fields === undefined) return [];
  const values = message as Readonly<Record<string, unknown>>;
  return Object.entries(fields)
    .filter(([field]) => values[field] !== undefined)
    .map(([, scope]) => scope);
}

export function rpcPolicy(methodName: string): RpcPolicy {
  return SESSION_RPCS[methodName] ?? { scope: "admin", operation: "ops" };
}
