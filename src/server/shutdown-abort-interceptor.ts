/**
 * Aborts every call's signal when the server shuts down, through one listener
 * on the shutdown signal for all calls (calls-in-flight.ts).
 *
 * Connect's own `shutdownSignal` option links each call's context signal to
 * the shared signal with a listener per call, which makes opening N long-lived
 * streams cost O(N²). Instead, this outermost interceptor passes on a signal of
 * its own that aborts with the call's (client gone, deadline, call ended) or
 * with the server's shutdown, whichever comes first. Connect hands the handler
 * the signal of the request the interceptors pass on (HandlerContext.signal is
 * req.signal), so every interceptor after this one and the handler see it.
 */
import type { Interceptor } from "@connectrpc/connect";
import type { CallsInFlight } from "./calls-in-flight.js";

export function createShutdownAbortInterceptor(inFlight: CallsInFlight): Interceptor {
  return (next) => (req) => {
    const callSignal = req.signal;
    const controller = new AbortController();
    if (callSignal.aborted) {
      controller.abort(callSignal.reason);
    } else {
      const slot = inFlight.add(controller);
      // Connect aborts the call's own signal when the call ends, however it ends: the call leaves the list then.
      callSignal.addEventListener(
        "abort",
        () => {
          inFlight.delete(slot);
          controller.abort(callSignal.reason);
        },
        { once: true },
      );
    }
    return next({ ...req, signal: controller.signal });
  };
}
