/**
 * Interceptors of createSessionClient that make unary outcomes honest and
 * CreateSession safe to retry:
 *
 * - A transport failure (replica crashed, connection reset, stream cancelled
 *   by a proxy) never reaches the caller as ABORTED, which this API uses for a
 *   version mismatch: it becomes UNKNOWN (outcome unknown) or, when the
 *   connection was never made, stays UNAVAILABLE (see transport-failure.ts).
 * - Every CreateSession carries a request_id (the caller's, or a random one),
 *   so the interceptor can retry a CreateSession whose outcome is unknown
 *   (UNKNOWN: connection lost, or the store lost its answer) without creating
 *   a duplicate: the server returns the session the first attempt created.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { UnaryRequest } from "@connectrpc/connect";
import { SessionService, type CreateSessionRequest } from "./gen/session/v1/session_pb.js";
import { withRequestId } from "./request-id.js";
import { isTransportFailure, transportFailureError } from "./transport-failure.js";

/** Attempts of one CreateSession whose outcome stays unknown (the deadline bounds them too). */
const CREATE_ATTEMPTS = 3;
const CREATE_RETRY_DELAY_MS = 50;

/** Maps transport failures of unary calls; streams are left to the watch helpers, which resume. */
export const honestOutcomes: Interceptor = (next) => async (req) => {
  if (req.stream) return next(req);
  try {
    return await next(req);
  } catch (error) {
    const failure = ConnectError.from(error);
    if (isTransportFailure(failure, req.signal.aborted)) throw transportFailureError(failure);
    throw error;
  }
};

/** Gives each CreateSession a request_id when it has none, and retries it with that id while the outcome is unknown. */
export const idempotentCreate: Interceptor = (next) => async (req) => {
  if (req.stream || req.method !== SessionService.method.createSession) return next(req);
  const create = req as UnaryRequest<typeof SessionService.method.createSession.input>;
  const message: CreateSessionRequest = withRequestId(create.message);
  const request = { ...create, message };
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await next(request);
    } catch (error) {
      const failure = ConnectError.from(error);
      // UNAVAILABLE means "not applied": the caller may retry with or without the id. UNKNOWN may have been applied.
      const unknown = failure.code === Code.Unknown;
      if (!unknown || attempt >= CREATE_ATTEMPTS || req.signal.aborted) throw error;
      await new Promise((resolve) => setTimeout(resolve, CREATE_RETRY_DELAY_MS * attempt));
      if (req.signal.aborted) throw error;
    }
  }
};
