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
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import { auditIdentity, PEER, PRINCIPAL } from "../auth/principal.js";
import { rpcPolicy } from "../auth/rpc-scopes.js";
import type { AuditLog, AuditRecord } from "./audit-log.js";

export function createAuditInterceptor(audit: AuditLog): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName !== SessionService.typeName) return next(req);
    const principal = req.contextValues.get(PRINCIPAL);
    const base = {
      ...(principal === undefined ? { principal: "unknown" } : auditIdentity(principal)),
      method: `${req.service.typeName}/${req.method.name}`,
      peer: req.contextValues.get(PEER).address,
    };
    const { operation } = rpcPolicy(req.method.name);
    const requestSessionId = req.stream ? undefined : sessionIdOf(req.message);
    const record = (outcome: string, extra: Partial<AuditRecord> = {}): void =>
      audit.record({ ...base, operation, outcome, ...(requestSessionId === undefined ? {} : { sessionId: requestSessionId }), ...extra });

    let res;
    try {
      res = await next(req);
    } catch (error) {
      record(outcomeOf(error));
      throw error;
    }
    if (!res.stream) {
      const sessionId = requestSessionId ?? sessionIdOf(res.message);
      record("ok", sessionId === undefined ? {} : { sessionId });
      return res;
    }
    const watched: StreamResponse = { ...res, message: auditStream(res.message, record) };
    return watched;
  };
}

async function* auditStream<T>(messages: AsyncIterable<T>, record: (outcome: string, extra?: Partial<AuditRecord>) => void): AsyncGenerator<T> {
  let started = false;
  let outcome = "ok";
  try {
    for await (const message of messages) {
      if (!started) {
        started = true;
        record("ok", { operation: "watch_start" });
      }
      yield message;
    }
  } catch (error) {
    outcome = outcomeOf(error);
    throw error;
  } finally {
    if (started) record(outcome, { operation: "watch_end" });
    else record(outcome, { operation: "watch_start" });
  }
}

function outcomeOf(error: unknown): string {
  const code = ConnectError.from(error).code;
  return Code[code].replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

/** The session a message is about: its `sessionId`, or its `session`'s (CreateSession's response). */
function sessionIdOf(message: object): string | undefined {
  const fields = message as Readonly<Record<string, unknown>>;
  const session = fields["session"];
  const id = fields["sessionId"] ?? (typeof session === "object" && session !== null ? (session as Readonly<Record<string, unknown>>)["sessionId"] : undefined);
  return typeof id === "string" && id !== "" ? id : undefined;
}
