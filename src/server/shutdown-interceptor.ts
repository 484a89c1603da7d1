/**
 * Ends server streams with UNAVAILABLE when the server shuts down.
 *
 * The shutdown signal aborts every handler's context signal; a streaming
 * handler that sees it simply returns, which on the wire would be a clean end
 * (OK) and tell the client the stream is over for good. UNAVAILABLE is what
 * gRPC clients treat as "retry elsewhere", so a watcher reconnects to another
 * replica. A handler that throws its own error on shutdown (for example
 * UNAVAILABLE with the cursor to resume from) is passed through unchanged.
 */
import { Code, ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";

export const SHUTDOWN_MESSAGE = "the server is shutting down: reconnect to another replica";

export function createShutdownInterceptor(shutdownSignal: AbortSignal): Interceptor {
  // A unary call's response is one message: nothing to end, so its call is passed on as it is (no extra promise).
  return (next) => (req) =>
    !req.stream
      ? next(req)
      : next(req).then((res) => {
          if (!res.stream) return res;
          const ended: StreamResponse = { ...res, message: unavailableOnShutdown(res.message, shutdownSignal) };
          return ended;
        });
}

async function* unavailableOnShutdown<T>(messages: AsyncIterable<T>, shutdownSignal: AbortSignal): AsyncGenerator<T> {
  yield* messages;
  if (shutdownSignal.aborted) throw new ConnectError(SHUTDOWN_MESSAGE, Code.Unavailable);
}
