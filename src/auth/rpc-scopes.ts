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

export function rpcPolicy(methodName: string): RpcPolicy {
  return SESSION_RPCS[methodName] ?? { scope: "admin", operation: "ops" };
}
