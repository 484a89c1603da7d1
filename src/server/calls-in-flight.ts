/**
 * The calls in flight, aborted together when the server shuts down.
 *
 * One listener on the shared shutdown signal for all of them, there only while
 * calls are in flight (an idle server holds none). A listener per call would
 * make opening N calls cost O(N²): EventTarget.addEventListener scans the
 * existing listeners for a duplicate.
 */

/** What a call in flight is aborted through (an AbortController, or call-abort.ts's CallAbort). */
export interface AbortableCall {
  abort(reason: unknown): void;
}

export class CallsInFlight {
  private readonly calls = new Set<AbortableCall>();
  private readonly onShutdown = (): void => {
    for (const call of this.calls) call.abort(this.shutdownSignal.reason);
  };

  constructor(private readonly shutdownSignal: AbortSignal) {}

  /** Tracks a call until delete(call); a call added after shutdown is aborted at once. */
  add(call: AbortableCall): void {
    if (this.shutdownSignal.aborted) {
      call.abort(this.shutdownSignal.reason);
      return;
    }
    if (this.calls.size === 0) this.shutdownSignal.addEventListener("abort", this.onShutdown, { once: true });
    this.calls.add(call);
  }

  delete(call: AbortableCall): void {
    if (this.calls.delete(call) && this.calls.size === 0) this.shutdownSignal.removeEventListener("abort", this.onShutdown);
  }
}
