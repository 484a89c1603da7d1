/**
 * The calls in flight, aborted together when the server shuts down.
 *
 * One listener on the shared shutdown signal for all of them, there only while
 * calls are in flight (an idle server holds none). A listener per call would
 * make opening N calls cost O(N²): EventTarget.addEventListener scans the
 * existing listeners for a duplicate.
 */
import { Node, Yallist } from "yallist";

/** What a call in flight is aborted through (an AbortController, or call-abort.ts's CallAbort). */
export interface AbortableCall {
  abort(reason: unknown): void;
}

/** A call's place among the calls in flight, for delete(). */
export type CallSlot = Node<AbortableCall>;

export class CallsInFlight {
  /**
   * Linked through its entries (yallist), not a Set: a long-lived Set with an
   * entry per call keeps young collections holding every call it ever had
   * (loop-aware-deadline.ts says how), and each call's graph was promoted.
   */
  private readonly calls = new Yallist<AbortableCall>();
  private readonly onShutdown = (): void => {
    // A copy: an abort may take its call out of the list, which would end a walk of the list itself.
    for (const call of this.calls.toArray()) call.abort(this.shutdownSignal.reason);
  };

  constructor(private readonly shutdownSignal: AbortSignal) {}

  /** Tracks a call until delete() of the slot this returns; a call added after shutdown is aborted at once. */
  add(call: AbortableCall): CallSlot {
    const slot = new Node(call);
    if (this.shutdownSignal.aborted) {
      call.abort(this.shutdownSignal.reason);
      return slot;
    }
    if (this.calls.length === 0) this.shutdownSignal.addEventListener("abort", this.onShutdown, { once: true });
    this.calls.pushNode(slot);
    return slot;
  }

  delete(slot: CallSlot): void {
    if (slot.list !== this.calls) return;
    this.calls.removeNode(slot);
    if (this.calls.length === 0) this.shutdownSignal.removeEventListener("abort", this.onShutdown);
  }
}
