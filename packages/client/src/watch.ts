/**
 * A WatchSessions helper that keeps watching across disconnects:
 *
 * ```ts
 * for await (const event of watchSessions(client, { userId: "alice" })) { ... }
 * ```
 *
 * `client` is a SessionClient, a WatchReader (watch-reader.ts) in a process
 * that holds many watches, or the grpc-js client (grpc-js.ts); errors of the
 * latter are read as ConnectErrors (the same codes, message and watch-cursor).
 *
 * It remembers the cursor of every event and heartbeat it hands out, and when
 * the stream breaks for any reason but a final answer of the server (a
 * replica crashed: CANCEL/RST, GOAWAY, connection reset; UNAVAILABLE on a
 * shutdown; RESOURCE_EXHAUSTED when it fell behind; the stream simply
 * ending) it watches again with resume_cursor after a backoff with jitter,
 * for as long as it takes, so the caller sees every event once and in order.
 * Final answers: OUT_OF_RANGE (the cursor is older than the retained history,
 * or of an event log that lost its data) throws WatchOutOfRangeError: the
 * caller must list the sessions again and start a new watch (for example with
 * send_initial_snapshot). PERMISSION_DENIED, UNAUTHENTICATED,
 * INVALID_ARGUMENT and UNIMPLEMENTED are thrown as they are: asking again
 * cannot change them.
 *
 * Leaving the loop (break, return, throw) cancels the server stream: with
 * connect-es, ending a for-await over a server stream does not, so each
 * connection's stream goes through cancelledOnExit (stream-cancel.ts).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SessionEvent, WatchSessionsRequestSchema, WatchSessionsResponse } from "./gen/session/v1/session_pb.js";
import { asConnectError, watchCursorOf } from "./errors.js";
import { cancelledOnExit } from "./stream-cancel.js";

/** The watch request, without resume_cursor (the helper sets it). */
export type WatchRequest = Omit<MessageInitShape<typeof WatchSessionsRequestSchema>, "resumeCursor" | "$typeName">;

/** What the helper needs of a client: SessionClient, WatchReader and SessionGrpcClient all have it. */
export interface WatchSessionsSource {
  watchSessions(
    request: MessageInitShape<typeof WatchSessionsRequestSchema>,
    options: { readonly signal: AbortSignal; readonly timeoutMs: number },
  ): AsyncIterable<WatchSessionsResponse>;
}

export interface WatchHelperOptions {
  /** Resume after this cursor from the start (e.g. one saved by a previous run). */
  readonly resumeCursor?: string;
  /** Stops the watch (the iterator then ends without an error). */
  readonly signal?: AbortSignal;
  /** First delay before reconnecting, doubled up to maxBackoffMs (default 100 ms). */
  readonly initialBackoffMs?: number;
  /** Default 5000 ms. */
  readonly maxBackoffMs?: number;
  /** Told about each reconnect (for logs and metrics). */
  readonly onReconnect?: (error: ConnectError, attempt: number, cursor: string) => void;
}

/** The cursor is older than the server's retained history: list again, then start a new watch. */
export class WatchOutOfRangeError extends Error {
  override readonly name = "WatchOutOfRangeError";
  constructor(
    readonly cursor: string,
    override readonly cause: ConnectError,
  ) {
    super(`watch cursor ${cursor} is older than the retained history: list the sessions and watch again`);
  }
}

/** Answers of the server that watching again cannot change; every other failure is retried. */
const FINAL: ReadonlySet<Code> = new Set([Code.PermissionDenied, Code.Unauthenticated, Code.InvalidArgument, Code.Unimplemented]);

/**
 * Yields every event (heartbeats included: they carry the position) until the
 * signal aborts. A snapshot is asked for only on the first connection; later
 * connections resume from the cursor instead.
 */
export async function* watchSessions(
  client: WatchSessionsSource,
  request: WatchRequest,
  options: WatchHelperOptions = {},
): AsyncGenerator<SessionEvent, void, undefined> {
  const initialBackoff = options.initialBackoffMs ?? 100;
  const maxBackoff = options.maxBackoffMs ?? 5000;
  let cursor = options.resumeCursor ?? "";
  let attempt = 0;
  while (!options.signal?.aborted) {
    let failure: ConnectError | undefined;
    try {
      const resuming = cursor !== "";
      // Each connection's stream is cancelled when it is left: an error, the caller's loop or signal.
      const stream = cancelledOnExit(
        (signal) =>
          client.watchSessions(
            { ...request, sendInitialSnapshot: resuming ? false : (request.sendInitialSnapshot ?? false), resumeCursor: cursor },
            // No deadline: a watch is meant to stay open (heartbeats keep it alive).
            { signal, timeoutMs: 0 },
          ),
        options.signal,
      );
      for await (const response of stream) {
        const event = response.event;
        if (event === undefined) continue;
        attempt = 0;
        // Snapshot items carry no cursor: the heartbeat that ends the snapshot does.
        if (event.cursor !== "") cursor = event.cursor;
        yield event;
      }
      // A clean end (a proxy closing an idle stream, an old server): watch again.
      failure = new ConnectError("watch stream ended", Code.Unavailable);
    } catch (error) {
      if (options.signal?.aborted) return;
      failure = asConnectError(error);
    }
    if (failure.code === Code.OutOfRange) throw new WatchOutOfRangeError(cursor, failure);
    // Our own signal returned above, so a CANCELED here is the transport's (a replica went away).
    if (FINAL.has(failure.code)) throw failure;
    // The server names the last cursor it sent; ours is at least as recent unless events were lost in flight.
    const told = watchCursorOf(failure);
    if (cursor === "" && told !== undefined) cursor = told;
    attempt += 1;
    options.onReconnect?.(failure, attempt, cursor);
    const delay = Math.min(maxBackoff, initialBackoff * 2 ** Math.min(attempt - 1, 16)) * (0.5 + Math.random() / 2);
    await abortableSleep(delay, options.signal);
  }
}

function abortableSleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
