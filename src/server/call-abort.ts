/**
 * A call's abort, with its AbortSignal made only when someone asks for it.
 *
 * Node builds an AbortSignal as an EventTarget whose prototype is swapped
 * afterwards, which costs microseconds, and most unary calls are neither
 * aborted nor asked for their signal. Whoever only needs to know whether the
 * call was aborted, and why, reads CALL_ABORT from the call's context values
 * (the RPC interceptor does, for every call); a handler that asks for
 * `signal` gets a real one, already aborted if the call was.
 */
import { createContextKey } from "@connectrpc/connect";

/** Whether a call was aborted and why: what an AbortSignal says, and what outcomes are judged by. */
export interface AbortState {
  readonly aborted: boolean;
  readonly reason: unknown;
}

export class CallAbort implements AbortState {
  private controller: AbortController | undefined = undefined;
  private abortedFlag = false;
  private abortReason: unknown = undefined;

  get aborted(): boolean {
    return this.abortedFlag;
  }

  get reason(): unknown {
    return this.abortReason;
  }

  /** The call's signal, made on first use. */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortedFlag) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Aborts the call (the first reason wins, as with an AbortController). */
  abort(reason: unknown): void {
    if (this.abortedFlag) return;
    this.abortedFlag = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }
}

/** The call's abort state, on paths that keep one (the fast gRPC unary path); absent: read the request's signal. */
export const CALL_ABORT = createContextKey<AbortState | undefined>(undefined, { description: "sessiond call abort state" });
