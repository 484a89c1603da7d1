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
 * A batch of one call goes as the script's own FCALL. A call waits for the
 * end of its turn unless its batch fills up: sending the first call of a
 * burst at once and batching the rest (while it is in flight) made a burst
 * two or three FCALLs and cost more Node and Redis CPU per call than one
 * batch, and saved a quiet service no CPU that could be told from noise.
 * A batch that is full goes at once, mid-turn (around the command
 * connection's automatic pipeline, which writes at the turn's end), so Redis
 * runs it while the service still decodes the rest of the burst. The batches
 * sent at the turn's end share that pipeline's one socket write.
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
  /** callForBuffers(), written to the connection now, not with the turn's other commands. */
  callForBuffersAtOnce(fn: string, key: string, args: readonly ScriptArg[]): Promise<unknown>;
}

export interface FcallBatchBounds {
  /** Calls in one batch of a script that writes: Redis runs a batch as one command, so this bounds how long it holds Redis. */
  readonly maxCalls: number;
  /** Calls in one batch of a read (reads cost Redis a fraction of a write, and gain nothing from being split). */
  readonly maxReadCalls: number;
  /** Bytes of arguments in one batch (a call larger than this goes alone). */
  readonly maxBytes: number;
}

/**
 * Writes, 32 calls: half of the requests one HTTP/2 connection has in flight
 * by default (64), so that a burst of writes is two batches and Redis runs the
 * first while the service decodes the second, instead of the two taking
 * turns; and few enough that a batch of the heaviest script (create) holds
 * Redis about as long as one slow command. Smaller batches overlapped no
 * better and cost Redis more per call (each batch has fixed work: the event
 * log's trim, the event readers woken). Reads, 16: while Redis runs a
 * burst's first batch of gets the service decodes the next requests and
 * answers the previous batch, where one batch of a connection's 64 left the
 * service nothing to do until Redis answered (under h2load 1 × 64: a median
 * 11 % more gets a second than batches of 64, ahead in 18 of 20 rounds, for a
 * few % more service CPU per get; batches of 8 cost more CPU and answered
 * fewer). 256 KiB: a batch's command stays well below Redis's query buffer
 * limits and takes one socket write.
 */
export const DEFAULT_FCALL_BATCH_BOUNDS: FcallBatchBounds = { maxCalls: 32, maxReadCalls: 16, maxBytes: 256 * 1024 };

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
  /**
   * Emptied once sent (the send keeps the calls it answers): the maps below
   * churn a table per turn, and young collections can still reach a batch
   * through a table left behind (loop-aware-deadline.ts says how); a sent
   * batch then holds no call's graph.
   */
  calls: Pending[];
  bytes: number;
  /** Flushed already (full, or a call that did not fit): the turn's end leaves it be. */
  sent: boolean;
}

/** A sent batch's calls (never added to: a batch takes calls only until it is sent). */
const SENT: Pending[] = [];

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
   * `read`: a read script (get, list, the data reads), whose batches hold up
   * to maxReadCalls.
   */
  call(fn: string, batchFn: string, key: string, call: ScriptCall, read = false): Promise<unknown> {
    const maxCalls = read ? this.bounds.maxReadCalls : this.bounds.maxCalls;
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
      this.flush(batch, true);
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
      if (open.calls.length >= maxCalls) {
        batches.delete(key);
        this.flush(open, true);
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
      for (const batch of batches) if (!batch.sent) this.flush(batch, false);
    });
  }

  /** Sends `batch`; `atOnce`: mid-turn, written now rather than with the turn's other commands. */
  private flush(batch: Batch, atOnce: boolean): void {
    batch.sent = true;
    const { calls } = batch;
    batch.calls = SENT;
    const only = calls.length === 1 ? calls[0] : undefined;
    if (only !== undefined) {
      this.send.call(batch.fn, batch.key, loneCallArguments(only.call)).then(only.resolve, only.reject);
      return;
    }
    const args = batchArguments(
      batch.shared,
      calls.map((pending) => pending.call.own),
    );
    (atOnce ? this.send.callForBuffersAtOnce(batch.batchFn, batch.key, args) : this.send.callForBuffers(batch.batchFn, batch.key, args)).then(
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
