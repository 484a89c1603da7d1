/**
 * Writes the audit record of every SessionService call that passed
 * authentication and authorization (the auth interceptor records those that
 * did not): who, which operation, which session, the outcome, from where.
 *
 * A unary call is one record when it ends. WatchSessions is two: watch_start
 * when the stream produced its first message or failed to (outcome of the
 * setup: a refused watch is one watch_start record with its error), and
 * watch_end when an admitted stream ends (ok when the client or the server
 * closed it normally).
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type { Interceptor, StreamResponse, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import { auditIdentity, PEER, PRINCIPAL } from "../auth/principal.js";
import { rpcPolicy } from "../auth/rpc-scopes.js";
import { outcomeCode, snakeCodeName } from "../observability/rpc-outcome.js";
import { RPC_IDS } from "../observability/trace-context.js";
import { correlationOf, type AuditLog, type AuditRecord } from "./audit-log.js";

export function createAuditInterceptor(audit: AuditLog): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== SessionService.typeName) return next(req);
    if (!req.stream) return unary(audit, next, req);
    const principal = req.contextValues.get(PRINCIPAL);
    const base = {
      ...(principal === undefined ? { principal: "unknown" } : auditIdentity(principal)),
      method: `${req.service.typeName}/${req.method.name}`,
      peer: req.contextValues.get(PEER).address,
      ...correlationOf(req.contextValues.get(RPC_IDS)),
    };
    const { operation } = rpcPolicy(req.method.name);
    const record = (outcome: string, extra: Partial<AuditRecord> = {}): void => audit.record({ ...base, operation, outcome, ...extra });

    let res;
    try {
      res = await next(req);
    } catch (error) {
      record(snakeCodeName(outcomeCode({ error, signal: req.signal })));
      throw error;
    }
    if (!res.stream) return res;
    const watched: StreamResponse = { ...res, message: auditStream(res.message, req.signal, record) };
    return watched;
  };
}

/** "package.Service/Method" per method descriptor (a fixed set): a call builds no string for it. */
const methodNames = new WeakMap<DescMethod, string>();

function methodName(method: DescMethod): string {
  let name = methodNames.get(method);
  if (name === undefined) {
    name = `${method.parent.typeName}/${method.name}`;
    methodNames.set(method, name);
  }
  return name;
}

/** A unary call: one record when it ends, built in one object (this runs for every session RPC). */
async function unary(audit: AuditLog, next: Parameters<Interceptor>[0], req: UnaryRequest): Promise<UnaryResponse> {
  let outcome = "ok";
  let sessionId = sessionIdOf(req.message);
  try {
    const res = (await next(req)) as UnaryResponse;
    sessionId ??= sessionIdOf(res.message);
    return res;
  } catch (error) {
    outcome = snakeCodeName(outcomeCode({ error, signal: req.signal }));
    throw error;
  } finally {
    const principal = req.contextValues.get(PRINCIPAL);
    const ids = req.contextValues.get(RPC_IDS);
    audit.recordSessionIdLast({
      principal: principal === undefined ? "unknown" : principal.id,
      tenant: principal?.tenant,
      user: principal?.user,
      delegated: principal?.delegated === true ? true : undefined,
      method: methodName(req.method),
      peer: req.contextValues.get(PEER).address,
      requestId: ids?.requestId,
      traceId: ids?.traceId,
      operation: rpcPolicy(req.method.name).operation,
      outcome,
      sessionId,
    });
  }
}

/**
 * watch_start once the stream produced its first message (or ended without
 * one), watch_end when it ends: with the code it really ended with, so a
 * client's cancel or deadline is audited as "canceled" / "deadline_exceeded".
 */
async function* auditStream<T>(
  messages: AsyncIterable<T>,
  signal: AbortSignal,
  record: (outcome: string, extra?: Partial<AuditRecord>) => void,
): AsyncGenerator<T> {
  let started = false;
  let ended = false;
  let error: unknown = undefined;
  try {
    for await (const message of messages) {
      if (!started) {
        started = true;
        record("ok", { operation: "watch_start" });
      }
      yield message;
    }
    ended = true;
  } catch (e) {
    error = e;
    ended = true;
    throw e;
  } finally {
    const outcome = snakeCodeName(outcomeCode({ signal, ...(error === undefined ? {} : { error }), ...(ended ? {} : { abandoned: true }) }));
    record(outcome, { operation: started ? "watch_end" : "watch_start" });
  }
}

/** The session a message is about: its `sessionId`, or its `session`'s (CreateSession's response). */
function sessionIdOf(message: object): string | undefined {
  const fields = message as Readonly<Record<string, unknown>>;
  const session = fields["session"];
  const id = fields["sessionId"] ?? (typeof session === "object" && session !== null ? (session as Readonly<Record<string, unknown>>)["sessionId"] : undefined);
  return typeof id === "string" && id !== "" ? id : undefined;
}
