/**
 * Honours call deadlines (grpc-timeout, connect-timeout-ms) for unary calls:
 * Connect aborts the handler's signal when the deadline passes but still
 * waits for the handler. This interceptor answers DEADLINE_EXCEEDED at the
 * deadline instead, and never starts a handler whose deadline has already
 * passed (so it writes nothing).
 *
 * A write that was already sent to the store when the deadline passed is not
 * cut in half: each store write is one atomic step (one Lua script), so it
 * either happens entirely, possibly after the caller was told
 * DEADLINE_EXCEEDED, or not at all. Callers retry with request_id or
 * expected_version, as after any timeout.
 *
 * Only deadlines: a server shutdown lets unary calls finish (see
 * rpc-server.ts), and a cancelled client is not waiting for an answer. So a
 * call that sent no deadline (no grpc-timeout or connect-timeout-ms header:
 * every protocol's only way to set one) goes straight through, without a
 * listener on its signal.
 */
import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";

function deadlineError(signal: AbortSignal): ConnectError | undefined {
  if (!signal.aborted) return undefined;
  const reason = ConnectError.from(signal.reason);
  return reason.code === Code.DeadlineExceeded ? reason : undefined;
}

/** Whether the caller set a deadline: gRPC and gRPC-Web send grpc-timeout, Connect connect-timeout-ms. */
function hasDeadline(header: Headers): boolean {
  return header.has("grpc-timeout") || header.has("connect-timeout-ms");
}

export function createDeadlineInterceptor(): Interceptor {
  // Without a deadline the call is passed on as it is (no extra promise).
  return (next) => (req) => (req.stream || !hasDeadline(req.header) ? next(req) : raceDeadline(next, req));
}

/** The call, or DEADLINE_EXCEEDED when its deadline passes first. */
async function raceDeadline(next: Parameters<Interceptor>[0], req: UnaryRequest): Promise<UnaryResponse | StreamResponse> {
  const passed = deadlineError(req.signal);
  if (passed !== undefined) throw passed;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    onAbort = () => {
      const error = deadlineError(req.signal);
      if (error !== undefined) reject(error);
    };
    req.signal.addEventListener("abort", onAbort, { once: true });
  });
  const call = next(req);
  // The handler may still settle after the deadline; nobody waits for it then.
  call.catch(() => {});
  deadline.catch(() => {});
  try {
    return await Promise.race([call, deadline]);
  } finally {
    if (onAbort !== undefined) req.signal.removeEventListener("abort", onAbort);
  }
}
