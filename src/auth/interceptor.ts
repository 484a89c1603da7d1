/**
 * The Connect interceptor that authenticates every call and checks the RPC's
 * scope, before any handler runs. On success the principal is put in the
 * call's context values (principalOf reads it); on failure the call ends with
 * UNAUTHENTICATED or PERMISSION_DENIED and a fixed message that tells an
 * attacker nothing (not which part of a token was wrong), and one audit record.
 *
 * Calls of other services (health, reflection) pass untouched unless
 * AUTH_PROTECT_OPS is on; then they need a valid principal (any scope).
 *
 * The principal put on the call is the one the call acts as: with the
 * sessiond-act-as header (delegation.ts), the credential's principal acting
 * for that user; the header without the right to it ends the call here.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import { correlationOf, type AuditLog } from "../audit/audit-log.js";
import { RPC_IDS } from "../observability/trace-context.js";
import type { Authenticator } from "./authenticator.js";
import { ACT_AS_HEADER } from "./delegation.js";
import { auditIdentity as identity, hasScope, PEER, PRINCIPAL, type Principal } from "./principal.js";
import { fieldScopes, rpcPolicy } from "./rpc-scopes.js";

export interface AuthInterceptorOptions {
  readonly authenticator: Authenticator;
  readonly audit: AuditLog;
  /** Also authenticate calls of other services (health, reflection). */
  readonly protectOps: boolean;
}

export const UNAUTHENTICATED_MESSAGE = "unauthenticated";
export const PERMISSION_DENIED_MESSAGE = "permission denied";

export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  const { authenticator, audit, protectOps } = options;
  /** A call the gate already admitted whose scopes hold: passed on as it is (no extra promise); any other goes through check(). */
  return (next) => (req) => {
    const isSession = req.service.typeName === SessionService.typeName;
    if (!isSession && !protectOps) return next(req);
    const admitted = req.contextValues.get(PRINCIPAL);
    if (admitted !== undefined && (!isSession || permits(admitted, req))) return next(req);
    return check(next, req, isSession);
  };

  async function check(next: Parameters<Interceptor>[0], req: Parameters<ReturnType<Interceptor>>[0], isSession: boolean): ReturnType<ReturnType<Interceptor>> {
    // Only a refusal names the method: the string is built then.
    const method = (): string => `${req.service.typeName}/${req.method.name}`;
    const peer = req.contextValues.get(PEER);
    // Only a refusal is recorded: its correlation ids are read then.
    const ids = (): ReturnType<typeof correlationOf> => correlationOf(req.contextValues.get(RPC_IDS));
    // The pre-dispatch gate (request-gate.ts) may have authenticated the call and checked its RPC scope from the
    // headers already; the field scopes below need the message, so they are checked here on every path.
    let principal = req.contextValues.get(PRINCIPAL);
    if (principal === undefined) {
      const authentication = await authenticator.authenticate({ authorization: req.header.get("authorization"), actAs: req.header.get(ACT_AS_HEADER) }, peer);
      if (!authentication.ok && authentication.outcome === "unauthenticated") {
        audit.record({ principal: "unknown", operation: "authenticate", method: method(), outcome: "unauthenticated", peer: peer.address, ...ids() });
        throw new ConnectError(UNAUTHENTICATED_MESSAGE, Code.Unauthenticated);
      }
      if (!authentication.ok) {
        // The refused header's value is not recorded: it is unchecked input.
        audit.record({ ...identity(authentication.principal), operation: "authorize", method: method(), outcome: authentication.outcome, peer: peer.address, ...ids() });
        throw new ConnectError(authentication.message, authentication.outcome === "permission_denied" ? Code.PermissionDenied : Code.InvalidArgument);
      }
      principal = authentication.principal;
      req.contextValues.set(PRINCIPAL, principal);
    }
    if (isSession && !permits(principal, req)) {
      audit.record({ ...identity(principal), operation: "authorize", method: method(), outcome: "permission_denied", peer: peer.address, ...ids() });
      throw new ConnectError(PERMISSION_DENIED_MESSAGE, Code.PermissionDenied);
    }
    return next(req);
  }
}

/** Whether `principal` holds the scope of a SessionService call's RPC and of the fields its message sets. */
function permits(principal: Principal, req: Parameters<ReturnType<Interceptor>>[0]): boolean {
  if (!hasScope(principal, rpcPolicy(req.method.name).scope)) return false;
  // Field scopes bind service principals; a call acting for a user is governed by that user's session levels instead (session/access-policy.ts).
  if (req.stream || principal.user !== undefined) return true;
  return fieldScopes(req.method.name, req.message).every((s) => hasScope(principal, s));
}
