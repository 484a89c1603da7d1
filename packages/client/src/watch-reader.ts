/**
 * A lean WatchSessions reader for processes that hold many watches:
 *
 * ```ts
 * const watches = createWatchReader("http://sessiond:8080");
 * for await (const { event } of watches.watchSessions({ userId: "alice" }, { signal })) { ... }
 * ```
 *
 * Why it exists: connect-es's client takes every message of a server stream
 * through a generic pipeline of async iterables (envelope, decompression,
 * parse, interceptors, promise client), whose CPU per message dominates a
 * process that holds thousands of watches (bench/RESULTS.md). This reader speaks the same gRPC protocol over the
 * same connect-node HTTP/2 session manager (pings, GOAWAY, reconnects), but
 * reads each DATA chunk in one synchronous step: split the envelopes, decode
 * with protobuf-es, queue for the consumer. About a fifth of the CPU per
 * message (bench/RESULTS.md).
 *
 * It has the same call shape as `SessionClient.watchSessions`, so the resuming
 * helper (`watchSessions(reader, ...)` in watch.ts) works with both, and its
 * errors are ConnectErrors with the codes, messages and metadata (the
 * watch-cursor trailer) connect's client gives. Differences, on purpose:
 * - Requests are not compressed and no response compression is offered (the
 *   server sends watch events uncompressed anyway).
 * - No interceptors: pass `headers` (per reader or per call) for credentials.
 * - Messages are frozen (read-only): the watches of one reader that receive the
 *   same event are handed the same message, decoded once (SharedDecoder).
 * - A consumer that stops reading is not buffered without end: past
 *   `maxQueuedMessages` the stream is paused, HTTP/2 flow control stops the
 *   server, and a watcher that stays behind is ended by the server with
 *   RESOURCE_EXHAUSTED and its cursor, as with any client.
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError, requestHeader, validateResponse } from "./grpc-wire.js";
import { Http2SessionManager, type Http2SessionOptions } from "@connectrpc/connect-node";
import { SessionService, WatchSessionsRequestSchema, WatchSessionsResponseSchema, type WatchSessionsResponse } from "./gen/session/v1/session_pb.js";

/** What the Headers constructor takes. */
type HeaderInit = ConstructorParameters<typeof Headers>[0];

export interface WatchReaderOptions {
  /** Sent with every call (e.g. `authorization`); a call's own headers add to them. */
  readonly headers?: HeaderInit;
  /** Largest message accepted (default 16 MiB); a larger one ends the call with RESOURCE_EXHAUSTED. */
  readonly readMaxBytes?: number;
  /** Messages decoded but not yet taken by the consumer before the stream pauses (default 256). */
  readonly maxQueuedMessages?: number;
  /** Keep-alive and idle settings of the HTTP/2 connection (connect-node's). */
  readonly http2?: Http2SessionOptions;
  /** Node's options for the HTTP/2 connection, e.g. TLS certificates for https URLs. */
  readonly nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions;
}

/** The options of one call; the subset of connect's CallOptions that a watch uses. */
export interface WatchCallOptions {
  readonly signal?: AbortSignal;
  /** Deadline of the whole stream; 0 or absent for none (a watch is meant to stay open). */
  readonly timeoutMs?: number;
  readonly headers?: HeaderInit;
  readonly onHeader?: (headers: Headers) => void;
  readonly onTrailer?: (trailers: Headers) => void;
}

/** Anything with a WatchSessions method of this shape: a SessionClient or a WatchReader. */
export interface WatchSessionsCaller {
  watchSessions(request: MessageInitShape<typeof WatchSessionsRequestSchema>, options?: WatchCallOptions): AsyncIterable<WatchSessionsResponse>;
}

export interface WatchReader extends WatchSessionsCaller {
  /** Closes the HTTP/2 connection; open watches end with CANCELED. */
  close(): void;
}

const DEFAULT_READ_MAX_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_QUEUED = 256;
/**
 * The connection's receive window. HTTP/2 starts every connection at 64 KiB:
 * with a thousand watches on one connection, one event to each is several
 * hundred KiB, and the server would wait for a WINDOW_UPDATE round trip every
 * 64 KiB. Streams keep their own (default) windows, which is what pauses a
 * slow one.
 */
const CONNECTION_WINDOW_BYTES = 32 * 1024 * 1024;
const WATCH_PATH = `/${SessionService.typeName}/${SessionService.method.watchSessions.name}`;
/** Bound on how stale the session manager's "last heard from the server" may get (see onData). */
const MAX_ALIVE_EVERY_MS = 1000;

/** A reader of WatchSessions streams from the service at baseUrl, over one HTTP/2 connection. */
export function createWatchReader(baseUrl: string, options: WatchReaderOptions = {}): WatchReader {
  const url = new URL(baseUrl);
  const manager = new Http2SessionManager(url, options.http2, options.nodeOptions);
  const path = `${url.pathname.replace(/\/$/, "")}${WATCH_PATH}`;
  const widened = new WeakSet<http2.ClientHttp2Session>();
  const limits: Limits = {
    decoder: new SharedDecoder(),
    readMaxBytes: options.readMaxBytes ?? DEFAULT_READ_MAX_BYTES,
    maxQueued: options.maxQueuedMessages ?? DEFAULT_MAX_QUEUED,
    aliveEveryMs: Math.min(MAX_ALIVE_EVERY_MS, (options.http2?.pingIntervalMs ?? Number.POSITIVE_INFINITY) / 2),
  };
  return {
    watchSessions(request, call = {}) {
      const headers = requestHeader(true, call.timeoutMs === 0 ? undefined : call.timeoutMs, mergeHeaders(options.headers, call.headers));
      const body = envelope(toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, request)));
      const open = async (): Promise<http2.ClientHttp2Stream> => {
        const stream = await manager.request("POST", path, webToNodeHeaders(headers), {});
        const session = stream.session as http2.ClientHttp2Session | undefined;
        if (session !== undefined && !widened.has(session)) {
          widened.add(session);
          session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        }
        stream.end(body);
        return stream;
      };
      return { [Symbol.asyncIterator]: () => new WatchCall(open, manager, call, limits) };
    },
    close() {
      manager.abort();
    },
  };
}

interface Limits {
  /** The reader's decoder, shared by its calls (see SharedDecoder). */
  readonly decoder: SharedDecoder;
  readonly readMaxBytes: number;
  readonly maxQueued: number;
  /** How often a call tells the session manager that its connection is alive (see onData). */
  readonly aliveEveryMs: number;
}

/**
 * One call: the stream's events feed a queue that next() drains. Everything
 * on the receiving side runs synchronously in the stream's event handlers.
 */
class WatchCall implements AsyncIterator<WatchSessionsResponse> {
  private readonly queue: WatchSessionsResponse[] = [];
  private head = 0;
  private waiting: { resolve: (r: IteratorResult<WatchSessionsResponse>) => void; reject: (e: unknown) => void } | undefined;
  /** Set once the call is over: undefined while open, null for a clean end, else the error. */
  private outcome: ConnectError | null | undefined;
  private stream: http2.ClientHttp2Stream | undefined;
  /** Bytes of an incomplete message, and how many the next parse needs at least. */
  private chunks: Buffer[] = [];
  private buffered = 0;
  private needed = 5;
  private headers: Headers | undefined;
  /** The status from the trailers (or a trailers-only response): the outcome once every message was read. */
  private status: ConnectError | null | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the session manager was last told that data arrived. */
  private aliveAt = 0;
  private readonly onAbort = (): void => this.finish(abortError(this.options.signal?.reason));

  constructor(
    open: () => Promise<http2.ClientHttp2Stream>,
    private readonly manager: Http2SessionManager,
    private readonly options: WatchCallOptions,
    private readonly limits: Limits,
  ) {
    const signal = options.signal;
    if (signal?.aborted === true) {
      this.outcome = abortError(signal.reason);
      return;
    }
    signal?.addEventListener("abort", this.onAbort, { once: true });
    if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
      this.timer = setTimeout(() => this.finish(new ConnectError("the operation timed out", Code.DeadlineExceeded)), options.timeoutMs);
    }
    open().then(
      (stream) => this.attach(stream),
      (error: unknown) => this.finish(ConnectError.from(error, Code.Unavailable)),
    );
  }

  next(): Promise<IteratorResult<WatchSessionsResponse>> {
    if (this.head < this.queue.length) return Promise.resolve({ done: false, value: this.take() });
    if (this.outcome === null) return Promise.resolve({ done: true, value: undefined });
    if (this.outcome !== undefined) return Promise.reject(this.outcome);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /** The consumer left the loop: cancel the stream. */
  return(): Promise<IteratorResult<WatchSessionsResponse>> {
    this.finish(null);
    this.queue.length = 0;
    this.head = 0;
    return Promise.resolve({ done: true, value: undefined });
  }

  private take(): WatchSessionsResponse {
    const message = this.queue[this.head] as WatchSessionsResponse;
    this.head += 1;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
    if (this.stream?.isPaused() === true && this.queue.length - this.head <= this.limits.maxQueued / 2) this.stream.resume();
    return message;
  }

  private attach(stream: http2.ClientHttp2Stream): void {
    if (this.outcome !== undefined) {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      return;
    }
    this.stream = stream;
    stream.on("response", (raw) => this.onResponse(raw));
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("trailers", (raw) => this.onTrailers(raw));
    stream.on("end", () => this.onEnd());
    stream.on("error", (error: Error) => this.finish(ConnectError.from(error, Code.Unavailable)));
    stream.on("close", () => this.finish(closeError(stream.rstCode)));
  }

  private onResponse(raw: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void {
    const headers = nodeToWebHeaders(raw);
    this.headers = headers;
    try {
      const { foundStatus, headerError } = validateResponse(raw[":status"] ?? 0, headers);
      this.options.onHeader?.(headers);
      // A trailers-only response: its status is in the headers and no message follows.
      if (headerError !== undefined) this.finish(headerError);
      else if (foundStatus) this.status = null;
    } catch (error) {
      this.finish(ConnectError.from(error));
    }
  }

  /** Splits a DATA chunk into messages; a message cut between chunks waits for the rest. */
  private onData(chunk: Buffer): void {
    if (this.outcome !== undefined) return;
    // The manager restarts its keep-alive timer on each notice: once per interval is enough, not once per message.
    const now = Date.now();
    if (now - this.aliveAt >= this.limits.aliveEveryMs) {
      this.aliveAt = now;
      this.manager.notifyResponseByteRead(this.stream as http2.ClientHttp2Stream);
    }
    let data = chunk;
    if (this.buffered > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.byteLength;
      if (this.buffered < this.needed) return;
      data = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
    }
    let offset = 0;
    for (;;) {
      const left = data.byteLength - offset;
      if (left < 5) {
        this.needed = 5;
        break;
      }
      const flags = data[offset] as number;
      const length = data.readUInt32BE(offset + 1);
      if ((flags & 0b1) !== 0) return this.finish(new ConnectError("received a compressed message, but no compression was negotiated", Code.Internal));
      if (length > this.limits.readMaxBytes) {
        return this.finish(new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.limits.readMaxBytes}`, Code.ResourceExhausted));
      }
      if (left < 5 + length) {
        this.needed = 5 + length;
        break;
      }
      let message: WatchSessionsResponse;
      try {
        message = this.limits.decoder.decode(data.subarray(offset + 5, offset + 5 + length));
      } catch (error) {
        return this.finish(new ConnectError("cannot decode a WatchSessionsResponse", Code.Internal, undefined, undefined, error));
      }
      offset += 5 + length;
      this.deliver(message);
    }
    if (offset < data.byteLength) {
      this.chunks.push(data.subarray(offset));
      this.buffered = data.byteLength - offset;
    }
    if (this.queue.length - this.head >= this.limits.maxQueued) this.stream?.pause();
  }

  private deliver(message: WatchSessionsResponse): void {
    const waiting = this.waiting;
    if (waiting !== undefined) {
      this.waiting = undefined;
      waiting.resolve({ done: false, value: message });
    } else {
      this.queue.push(message);
    }
  }

  /** Trailers may arrive before the last messages are read: the call ends on 'end'. */
  private onTrailers(raw: http2.IncomingHttpHeaders): void {
    const trailers = nodeToWebHeaders(raw);
    this.options.onTrailer?.(trailers);
    const error = findTrailerError(trailers);
    if (error !== undefined) {
      // As connect's client: the error's metadata holds the response headers and the trailers.
      this.headers?.forEach((value, key) => error.metadata.append(key, value));
      this.status = error;
    } else if (trailers.has("grpc-status")) {
      this.status = null;
    } else {
      this.status = new ConnectError("protocol error: missing status", Code.Internal);
    }
  }

  private onEnd(): void {
    if (this.buffered > 0) return this.finish(new ConnectError("protocol error: incomplete envelope", Code.Internal));
    this.finish(this.status === undefined ? new ConnectError("protocol error: missing trailers", Code.Internal) : this.status);
  }

  /** Ends the call once: the consumer sees what is queued, then the end or the error. */
  private finish(outcome: ConnectError | null): void {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    this.options.signal?.removeEventListener("abort", this.onAbort);
    clearTimeout(this.timer);
    // Cancel what is still open (the consumer left, the deadline passed); a finished stream closes by itself.
    const stream = this.stream;
    if (stream !== undefined && !stream.closed && !stream.readableEnded) stream.close(http2.constants.NGHTTP2_CANCEL);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting === undefined) return;
    if (outcome === null) waiting.resolve({ done: true, value: undefined });
    else waiting.reject(outcome);
  }
}

/**
 * Decodes a message once for every watch of a reader that receives the same
 * bytes: the server sends an event as the same bytes to each of its watches, so
 * a process holding a thousand watches on one connection would otherwise decode
 * each event a thousand times. The message is frozen (deeply), since every one
 * of those watches is handed the same object.
 */
class SharedDecoder {
  private readonly recent: { bytes: Buffer; message: WatchSessionsResponse }[] = [];

  decode(bytes: Buffer): WatchSessionsResponse {
    // A large message is decoded for each watch: remembering it would hold its bytes.
    if (bytes.byteLength > SHARED_MAX_BYTES) return deepFreeze(fromBinary(WatchSessionsResponseSchema, bytes));
    for (const entry of this.recent) {
      if (entry.bytes.byteLength === bytes.byteLength && entry.bytes.equals(bytes)) return entry.message;
    }
    const message = deepFreeze(fromBinary(WatchSessionsResponseSchema, bytes));
    // A copy: the chunk's buffer belongs to the stream.
    this.recent.unshift({ bytes: Buffer.from(bytes), message });
    if (this.recent.length > RECENT_MESSAGES) this.recent.pop();
    return message;
  }
}

/** Distinct messages the shared decoder remembers (events in flight at once on a connection). */
const RECENT_MESSAGES = 4;
/** Largest message the shared decoder remembers: it holds at most RECENT_MESSAGES of them. */
const SHARED_MAX_BYTES = 64 * 1024;

function deepFreeze<T>(value: T): T {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value) || Object.isFrozen(value)) return value;
  for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  return Object.freeze(value);
}

/** The 5-byte gRPC envelope (flag 0: not compressed) around a message. */
function envelope(message: Uint8Array): Buffer {
  const bytes = Buffer.allocUnsafe(5 + message.byteLength);
  bytes.writeUInt8(0, 0);
  bytes.writeUInt32BE(message.byteLength, 1);
  bytes.set(message, 5);
  return bytes;
}

function abortError(reason: unknown): ConnectError {
  return ConnectError.from(reason ?? new Error("This operation was aborted"), Code.Canceled);
}

/** The error for a stream that closed without a status (reset by the peer or the connection lost). */
function closeError(rstCode: number | undefined): ConnectError {
  switch (rstCode) {
    case http2.constants.NGHTTP2_REFUSED_STREAM:
      return new ConnectError("stream refused by the server", Code.Unavailable);
    case http2.constants.NGHTTP2_CANCEL:
      return new ConnectError("stream cancelled by the server", Code.Canceled);
    case http2.constants.NGHTTP2_ENHANCE_YOUR_CALM:
      return new ConnectError("stream reset by the server: enhance your calm", Code.ResourceExhausted);
    case http2.constants.NGHTTP2_INADEQUATE_SECURITY:
      return new ConnectError("stream reset by the server: inadequate security", Code.PermissionDenied);
    default:
      return new ConnectError(`stream closed without a status (HTTP/2 code ${rstCode ?? "none"})`, Code.Unavailable);
  }
}

function mergeHeaders(...all: (HeaderInit | undefined)[]): Headers {
  const merged = new Headers();
  for (const init of all) {
    if (init === undefined) continue;
    new Headers(init).forEach((value, key) => merged.append(key, value));
  }
  return merged;
}

function webToNodeHeaders(headers: Headers): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}

function nodeToWebHeaders(raw: http2.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith(":") || value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) headers.append(key, v);
    else headers.append(key, String(value));
  }
  return headers;
}
