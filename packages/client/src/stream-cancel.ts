/**
 * Leaving a `for await` over a connect-es server stream (break, return, a
 * throw) ends only the client's side: the HTTP/2 stream stays open, and the
 * server keeps the watch, until the connection closes. Aborting the call's
 * signal cancels it (RST_STREAM), so the stream is opened with a signal of
 * our own, aborted when the loop is left or the caller's signal aborts. The
 * call starts at once, as connect-es starts it, not at the first read.
 */
export function cancelledOnExit<T>(open: (signal: AbortSignal) => AsyncIterable<T>, callerSignal?: AbortSignal): AsyncIterable<T> {
  const abort = new AbortController();
  const follow = (): void => abort.abort(callerSignal?.reason);
  if (callerSignal?.aborted === true) follow();
  else callerSignal?.addEventListener("abort", follow, { once: true });
  const stream = open(abort.signal);
  return (async function* (): AsyncGenerator<T, void, undefined> {
    try {
      yield* stream;
    } finally {
      callerSignal?.removeEventListener("abort", follow);
      abort.abort();
    }
  })();
}
