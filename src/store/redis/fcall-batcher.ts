/**
 * Sends the calls of one script to one partition that are made in the same
 * turn of the event loop as one FCALL of the script's batch function
 * (scripts.ts, run_batch), which runs each call in turn exactly as its own
 * FCALL would and answers one reply per call, all packed in one string
 * (packed-reply.ts reads them as the calls' own FCALLs' replies would read).
 * Under load many calls arrive
 * together (one socket read carries many requests), and each FCALL costs
 * Redis a command dispatch and ioredis a command, a promise and a share of a
 * socket write; one FCALL for the lot pays that once.
 *
 * Calls are never merged or deduplicated: two identical calls run twice.
 * A batch of one call goes as the script's own FCALL. Every call waits for
 * the end of its turn, also the first of a burst: sending that one at once
 * and batching the rest (while it is in flight) made a burst two or three
 * FCALLs and cost more Node and Redis CPU per call than the one batch, and
 * saved a quiet service no CPU that could be told from noise.
 * The calls of one batch share its fate on the connection (a lost connection,
 * a refusal before it ran: OOM, "Function not found", a moved slot); a Lua
 * error of one call fails that call only.
 *
 * The batch is sent from setImmediate: after the I/O phase that delivered the
 * requests and every promise continuation they started, so all the calls that
 * one socket read causes meet in one batch, and with nothing else to do the
 * loop gets there at once. process.nextTick or a microtask sends before the
 * requests read later in the same phase have reached the store: measured
 * under h2load (64 streams), they made one FCALL per call, setImmediate one
 * per 60.
 */
import { BATCH_ITEM_ERROR, batchArguments, loneCallArguments, type ScriptCall } from "./scripts.js";
import { unpackReply } from "./packed-reply.js";
import type { ScriptArg } from "./script-library.js";

/** Sends one FCALL of `fn` with the one key `key` (ScriptLibraryCaller). */
export interface FcallSender {
  /** A lone call: its reply as ioredis reads it. */
  call(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown>;
  /** A batch: its reply, one packed string (run_batch), as a Buffer. */
  callForBuffers(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown>;
}

export interface FcallBatchBounds {
  /** Calls in one batch: Redis runs a batch as one command, so this bounds how long it holds Redis. */
  readonly maxCalls: number;
  /** Bytes of arguments in one batch (a call larger than this goes alone). */
  readonly maxBytes: number;
}

/**
 * 64 calls: the requests one HTTP/2 connection has in flight by default, and
 * few enough that a batch of the heaviest script (create) holds Redis about as
 * long as one slow command. 256 KiB: a batch's command stays well below
 * Redis's query buffer limits and takes one socket write.
 */
export const DEFAULT_FCALL_BATCH_BOUNDS: FcallBatchBounds = { maxCalls: 64, maxBytes: 256 * 1024 };

interface Pending {
  readonly call: ScriptCall;
  readonly resolve: (reply: unknown) => void;
  readonly reject: (error: unknown) => void;
}

interface Batch {
  readonly fn: string;
  readonly batchFn: string;
  readonly key: string;
  /** The arguments every call of the batch shares (sent once). */
  readonly shared: readonly ScriptArg[];
  readonly calls: Pending[];
  bytes: number;
  /** Flushed already (full, or a call that did not fit): the turn's end leaves it be. */
  sent: boolean;
}

export class FcallBatcher {
  /** Batches still taking calls, by batch function, then key (no string made per call to look one up). */
  private readonly open = new Map<string, Map<string, Batch>>();
  /** This turn's batches in the order they were opened: the order they are sent in. */
  private opened: Batch[] = [];
  private scheduled = false;

  constructor(
    private readonly send: FcallSender,
    private readonly bounds: FcallBatchBounds = DEFAULT_FCALL_BATCH_BOUNDS,
  ) {}

  /**
   * The reply of `fn` called with `key` and `call`'s arguments, sent with the
   * other calls of `batchFn` to `key` made in this turn (the store gives them
   * the same `shared` array: a call with another one starts a batch of its own).
   */
  call(fn: string, batchFn: string, key: string, call: ScriptCall): Promise<unknown> {
    const bytes = argumentBytes(call.own);
    let byKey = this.open.get(batchFn);
    if (byKey === undefined) {
      byKey = new Map();
      this.open.set(batchFn, byKey);
    }
    const batches = byKey;
    let batch = batches.get(key);
    if (batch !== undefined && (batch.bytes + bytes > this.bounds.maxBytes || batch.shared !== call.shared)) {
      batches.delete(key);
      this.flush(batch);
      batch = undefined;
    }
    if (batch === undefined) {
      batch = { fn, batchFn, key, shared: call.shared, calls: [], bytes: argumentBytes(call.shared), sent: false };
      batches.set(key, batch);
      this.opened.push(batch);
      this.schedule();
    }
    const open = batch;
    return new Promise((resolve, reject) => {
      open.calls.push({ call, resolve, reject });
      open.bytes += bytes;
      if (open.calls.length >= this.bounds.maxCalls) {
        batches.delete(key);
        this.flush(open);
      }
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const batches = this.opened;
      this.opened = [];
      this.open.clear();
      for (const batch of batches) if (!batch.sent) this.flush(batch);
    });
  }

  private flush(batch: Batch): void {
    batch.sent = true;
    const { calls } = batch;
    const only = calls.length === 1 ? calls[0] : undefined;
    if (only !== undefined) {
      this.send.call(batch.fn, batch.key, loneCallArguments(only.call)).then(only.resolve, only.reject);
      return;
    }
    const args = batchArguments(
      batch.shared,
      calls.map((pending) => pending.call.own),
    );
    this.send.callForBuffers(batch.batchFn, batch.key, args).then(
      (reply) => answer(calls, reply),
      (error: unknown) => {
        for (const call of calls) call.reject(error);
      },
    );
  }
}

function answer(calls: readonly Pending[], packed: unknown): void {
  const reply = unpacked(packed);
  if (!Array.isArray(reply) || reply.length !== calls.length) {
    const error = new Error("unexpected reply from a redis batch function");
    for (const call of calls) call.reject(error);
    return;
  }
  calls.forEach((call, i) => {
    const item: unknown = reply[i];
    if (Array.isArray(item) && item[0] === BATCH_ITEM_ERROR) call.reject(itemError(item[1]));
    else call.resolve(item);
  });
}

/** The batch's replies (run_batch packs them); undefined when the reply is not a packed value. */
function unpacked(packed: unknown): unknown {
  if (!Buffer.isBuffer(packed)) return undefined;
  try {
    return unpackReply(packed);
  } catch {
    return undefined;
  }
}

/** A call's Lua error, as ioredis reports the error of a call sent alone (call-outcome.ts reads these). */
function itemError(text: unknown): Error {
  const error = new Error(typeof text === "string" ? text : "the script failed");
  error.name = "ReplyError";
  return error;
}

function argumentBytes(args: readonly ScriptArg[]): number {
  let bytes = 0;
  for (const arg of args) bytes += typeof arg === "string" ? Buffer.byteLength(arg) : typeof arg === "number" ? 8 : arg.length;
  return bytes;
}
