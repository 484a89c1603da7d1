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

/** A client's reset this close to the deadline is the deadline (the client's timer runs ahead of ours). */
const DEADLINE_TOLERANCE_MS = 250;

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
    const deadline = deadlineOf(req.header);
    const signal = req.signal;
    /** The status name of how the call ended; a call cut at its deadline says so whichever side noticed first. */
    const outcomeOf = (error: unknown): string => {
      const code = ConnectError.from(error).code;
      if (code === Code.Canceled && (ConnectError.from(signal.reason).code === Code.DeadlineExceeded || (deadline !== undefined && Date.now() >= deadline - DEADLINE_TOLERANCE_MS))) {
        return statusName(Code.DeadlineExceeded);
      }
      return statusName(code);
    };
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
    const watched: StreamResponse = { ...res, message: auditStream(res.message, record, outcomeOf) };
    return watched;
  };
}

async function* auditStream<T>(
  messages: AsyncIterable<T>,
  record: (outcome: string, extra?: Partial<AuditRecord>) => void,
  outcomeOf: (error: unknown) => string,
): AsyncGenerator<T> {
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

/**
 * When the call's deadline passes (epoch ms), from grpc-timeout or
 * connect-timeout-ms. A client usually resets its stream at its own deadline,
 * which the server sees as a cancel: this tells the two apart.
 */
function deadlineOf(header: Headers): number | undefined {
  const grpc = header.get("grpc-timeout");
  const match = grpc === null ? null : /^(\d{1,8})([HMSmun])$/.exec(grpc);
  if (match !== null) {
    const units: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
    return Date.now() + Number(match[1]) * (units[match[2] as string] ?? 1);
  }
  const connect = header.get("connect-timeout-ms");
  if (connect !== null && /^\d{1,10}$/.test(connect)) return Date.now() + Number(connect);
  return undefined;
}

function statusName(code: Code): string {
  return Code[code].replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

/** The session a message is about: its `sessionId`, or its `session`'s (CreateSession's response). */
function sessionIdOf(message: object): string | undefined {
  const fields = message as Readonly<Record<string, unknown>>;
  const session = fields["session"];
  const id = fields["sessionId"] ?? (typeof session === "object" && session !== null ? (session as Readonly<Record<string, unknown>>)["sessionId"] : undefined);
  return typeof id === "string" && id !== "" ? id : undefined;
}
