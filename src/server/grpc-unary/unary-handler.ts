/**
 * Unary gRPC calls served straight from the HTTP/2 stream.
 *
 * connect-node serves every call through Node's HTTP/2 compatibility layer
 * and a chain of async iterables (split envelopes, decompress, parse, invoke,
 * serialize, compress, join, catch), and aborts an AbortController at the end
 * of every call (a DOMException with a captured stack). For a unary call over
 * gRPC all of that is one message in, one message out. This handler reads the
 * request body from the stream, and runs the method through the SAME
 * interceptor chain (applyInterceptors order, same request/response shapes,
 * same HandlerContext) that connect would run, then writes one HEADERS, one
 * DATA and one trailers frame (or a trailers-only answer on error).
 *
 * Protocol rules beyond framing (grpc-timeout, compression negotiation,
 * error trailers with grpc-status-details-bin) are in grpc-protocol.ts;
 * grpc-message is written the spec's way (grpc-message.ts). Everything else (streaming methods, gRPC-Web, Connect,
 * the JSON codec, HTTP/1.1) stays with connect: see stream-dispatch.ts.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { constants as http2Constants } from "node:http2";
import { create, fromBinary, isMessage, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createContextKey,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { ACT_AS_HEADER } from "../../auth/delegation.js";
import { peerOf } from "../../auth/peer.js";
import { rememberPrincipal, type RequestGate } from "../../auth/request-gate.js";
import { negotiateCompression, parseGrpcTimeout, setErrorTrailers, type Compression } from "./grpc-protocol.js";
import { CallHeaders } from "./call-headers.js";
import { resetSlowStream, streamArrived, watchArrival, type ArrivalLimits, type SlowReason } from "../request-arrival.js";
import type { UnaryMethods, UnaryMethodSpec } from "./unary-methods.js";

export interface GrpcUnaryOptions {
  readonly methods: UnaryMethods;
  /** Outermost first, as given to connectNodeAdapter. */
  readonly interceptors: readonly Interceptor[];
  /** Largest request message, before and after decompression (RESOURCE_EXHAUSTED beyond). */
  readonly readMaxBytes: number;
  /** Largest response message (RESOURCE_EXHAUSTED beyond). */
  readonly writeMaxBytes: number;
  /** Aborting it aborts every call's context signal, as connect's shutdownSignal does. */
  readonly shutdownSignal: AbortSignal;
  /** Initial context values of a call (peer address, HTTP/2 stream). */
  readonly contextValues: (stream: ServerHttp2Stream) => ContextValues;
  /** Request and response compressions, preferred first (connect-node's default: gzip, br). */
  readonly acceptCompression: readonly Compression[];
  /** Responses smaller than this are not compressed (connect's default: 1024). */
  readonly compressMinBytes: number;
  /** The pre-dispatch gate (auth/request-gate.ts): judged from the headers, before the body is read. */
  readonly gate?: RequestGate;
  /** The gate threw (e.g. a JWKS fetch failed unexpectedly): the stream is reset. */
  readonly onGateError?: (error: unknown) => void;
  /** Our answer to, and count of, a request message that does not decode. */
  readonly malformedBody?: MalformedBody;
  /** How slowly the request body may arrive (REQUEST_TIMEOUT, MIN_REQUEST_BODY_RATE); a slower one's stream is reset (request-arrival.ts). */
  readonly arrival?: ArrivalLimits;
  readonly onSlow?: (stream: ServerHttp2Stream, reason: SlowReason) => void;
}

/** How a request message that does not decode is answered and counted (the API layer's request-body-check.ts). */
export interface MalformedBody {
  /** INVALID_ARGUMENT with a message of ours for the decoder's failure; never the parser's text. */
  error(schema: DescMessage, parserError: unknown): ConnectError;
  /** `method` is "package.Service/Method"; `values` the call's context values (the peer); `reason` default "malformed_body". */
  report(method: string, values: ContextValues, reason?: "malformed_body" | "too_large"): void;
}

/** Serves a stream when it is a unary gRPC call with the binary codec; returns false to leave it to connect. */
export type GrpcUnaryHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

const HEADER_CONTENT_TYPE = "content-type";
const CONTENT_TYPE_GRPC = "application/grpc";
/** Bytes of the length-prefixed message header: 1 flag byte, 4 length bytes. */
const PREFIX = 5;
const FLAG_COMPRESSED = 0b00000001;

/** The call's own context, for the innermost step of the shared interceptor chain. */
const CALL_CONTEXT = createContextKey<HandlerContext | undefined>(undefined, { description: "sessiond grpc unary call context" });

const DEADLINE_EXCEEDED = (): ConnectError => new ConnectError("the operation timed out", Code.DeadlineExceeded);
/** A reason given up front spares a DOMException (and its stack) per cancelled call. */
const CLIENT_CANCELLED = new ConnectError("the client cancelled the call", Code.Canceled);

export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  // One shutdown listener for all calls in flight, rather than one per call as connect links them.
  const inFlight = new CallsInFlight(options.shutdownSignal);
  const acceptCompression = [...options.acceptCompression];
  // The interceptor chain around the implementation, built once per method: the call's context travels in its context values.
  const chains = new Map<UnaryMethodSpec, (req: UnaryRequest) => Promise<UnaryResponse>>();
  const chainFor = (spec: UnaryMethodSpec): ((req: UnaryRequest) => Promise<UnaryResponse>) => {
    let chain = chains.get(spec);
    if (chain === undefined) {
      chain = applyInterceptors(invoker(spec), options.interceptors);
      chains.set(spec, chain);
    }
    return chain;
  };

  return (stream, headers) => {
    const contentType = headers[HEADER_CONTENT_TYPE];
    if (contentType !== CONTENT_TYPE_GRPC && contentType !== "application/grpc+proto") return false;
    if (headers[":method"] !== "POST") return false;
    const path = headers[":path"];
    const spec = path === undefined ? undefined : options.methods.get(path);
    if (spec === undefined) return false;
    // A reset stream reports an error; the call's abort signal already tells the handler.
    stream.on("error", ignore);
    void serve(stream, headers, spec, contentType);
    return true;
  };

  async function serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, spec: UnaryMethodSpec, contentType: string): Promise<void> {
    if (options.gate !== undefined) {
      // Before a byte of the body is read: a caller without valid credentials costs no read and no parse.
      const admitted = await admit(stream, headers, options.gate, options.onGateError);
      if (!admitted) return;
    }
    const timeout = parseGrpcTimeout(single(headers["grpc-timeout"]));
    const compression = negotiateCompression(acceptCompression, single(headers["grpc-encoding"]), single(headers["grpc-accept-encoding"]));
    const controller = new AbortController();
    const timeoutMs = timeout.timeoutMs;
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const context: HandlerContext = {
      service: spec.method.parent,
      method: spec.method,
      protocolName: "grpc",
      requestMethod: "POST",
      url: `http://${single(headers[":authority"]) ?? "localhost"}${headers[":path"] ?? ""}`,
      signal: controller.signal,
      timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
      requestHeader: new CallHeaders(webHeaders(headers)),
      responseHeader: new CallHeaders({ [HEADER_CONTENT_TYPE]: contentType }),
      responseTrailer: new CallHeaders({ "grpc-status": "0" }),
      values: options.contextValues(stream),
    };
    context.values.set(CALL_CONTEXT, context);
    // The deadline, the server's shutdown and a client's reset abort the handler's signal, as in connect.
    const abort = (reason: ConnectError): void => {
      if (!controller.signal.aborted) controller.abort(reason);
    };
    // The caller's own deadline is wall time by definition (its clock runs whether or not this process is busy).
    const timer = timeoutMs === undefined || timeoutMs <= 0 ? undefined : setTimeout(() => abort(DEADLINE_EXCEEDED()), timeoutMs);
    if (timeoutMs !== undefined && timeoutMs <= 0) abort(DEADLINE_EXCEEDED());
    const untrack = inFlight.add(controller);
    const onAborted = (): void => abort(CLIENT_CANCELLED);
    stream.once("aborted", onAborted);
    if (compression.response !== null) context.responseHeader.set("grpc-encoding", compression.response.name);
    try {
      if (compression.error !== undefined) throw compression.error;
      if (timeout.error !== undefined) throw timeout.error;
      const envelope = await readEnvelope(stream, options.readMaxBytes, options.arrival, (reason) => options.onSlow?.(stream, reason), () =>
        options.malformedBody?.report(`${spec.method.parent.typeName}/${spec.method.name}`, context.values, "too_large"),
      );
      const input = await decodeMessage(spec.method.input, envelope, compression.request, options.readMaxBytes, options.malformedBody, () =>
        options.malformedBody?.report(`${spec.method.parent.typeName}/${spec.method.name}`, context.values),
      );
      const response = await chainFor(spec)({
        stream: false,
        service: spec.method.parent,
        method: spec.method,
        requestMethod: "POST",
        url: context.url,
        signal: context.signal,
        header: context.requestHeader,
        contextValues: context.values,
        message: input,
      });
      const body = await encodeMessage(spec.method.output, response.message, compression.response, options);
      respond(stream, response.header, response.trailer, body);
    } catch (error) {
      // As connect does: anything but a ConnectError is an internal error whose message stays in the process.
      respondError(stream, context, error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error));
    } finally {
      stream.off("aborted", onAborted);
      if (timer !== undefined) clearTimeout(timer);
      untrack();
    }
  }
}

/**
 * Runs the gate on a stream's headers. A refusal is answered trailers-only
 * with the gate's code and message (the gate has recorded it); an admitted
 * call's principal is handed to its context values (peer.ts) and its slot is
 * freed when the stream closes.
 */
async function admit(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, gate: RequestGate, onError?: (error: unknown) => void): Promise<boolean> {
  const authorization = headers.authorization;
  const actAs = headers[ACT_AS_HEADER];
  const credentials = { authorization: typeof authorization === "string" ? authorization : null, actAs: typeof actAs === "string" ? actAs : null };
  let decision: Awaited<ReturnType<RequestGate["check"]>>;
  try {
    decision = await gate.check(headers[":path"] ?? "", credentials, peerOf(stream), stream.session ?? stream);
  } catch (error) {
    onError?.(error);
    if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
    return false;
  }
  if (!decision.allowed) {
    if (!stream.destroyed && !stream.closed && !stream.headersSent) {
      const trailer = new CallHeaders({ [HEADER_CONTENT_TYPE]: CONTENT_TYPE_GRPC });
      setErrorTrailers(trailer, new ConnectError(decision.message, decision.code));
      const head = nodeHeaders(trailer);
      head[http2Constants.HTTP2_HEADER_STATUS] = 200;
      stream.respond(head, { endStream: true });
    }
    return false;
  }
  if (stream.destroyed || stream.closed) {
    decision.release();
    return false;
  }
  stream.once("close", decision.release);
  if (decision.principal !== undefined) rememberPrincipal(stream, decision.principal);
  return true;
}

/**
 * The abort controllers of the calls in flight, aborted together when the
 * server shuts down. The one listener on the shutdown signal is there only
 * while calls are in flight, so an idle server holds none.
 */
class CallsInFlight {
  private readonly calls = new Set<AbortController>();
  private readonly onShutdown = (): void => {
    for (const call of this.calls) call.abort(this.shutdownSignal.reason);
  };

  constructor(private readonly shutdownSignal: AbortSignal) {}

  /** Tracks a call until the returned function is called. */
  add(call: AbortController): () => void {
    if (this.shutdownSignal.aborted) {
      call.abort(this.shutdownSignal.reason);
      return () => {};
    }
    if (this.calls.size === 0) this.shutdownSignal.addEventListener("abort", this.onShutdown, { once: true });
    this.calls.add(call);
    return () => {
      if (this.calls.delete(call) && this.calls.size === 0) this.shutdownSignal.removeEventListener("abort", this.onShutdown);
    };
  }
}

/** The innermost step: the implementation, as connect's invokeUnaryImplementation calls it. */
function invoker(spec: UnaryMethodSpec): (req: UnaryRequest) => Promise<UnaryResponse> {
  return async (req) => {
    const context = req.contextValues.get(CALL_CONTEXT);
    if (context === undefined) throw new ConnectError("call context missing", Code.Internal);
    const output = await spec.impl(req.message, { ...context, service: req.service, requestHeader: req.header, signal: req.signal, values: req.contextValues });
    const message = isMessage(output, spec.method.output) ? output : create(spec.method.output, output);
    return { stream: false, service: spec.method.parent, method: spec.method, header: context.responseHeader, trailer: context.responseTrailer, message };
  };
}

/** Connect's order: the first interceptor is the outermost. */
function applyInterceptors(
  next: (req: UnaryRequest) => Promise<UnaryResponse>,
  interceptors: readonly Interceptor[],
): (req: UnaryRequest) => Promise<UnaryResponse> {
  let fn = next as Parameters<Interceptor>[0];
  for (let i = interceptors.length - 1; i >= 0; i--) fn = interceptors[i]!(fn);
  return fn as (req: UnaryRequest) => Promise<UnaryResponse>;
}

interface Envelope {
  readonly flags: number;
  readonly data: Uint8Array;
}

/**
 * Reads the one length-prefixed message of a unary request. A declared length
 * over the limit is refused as soon as its prefix arrives, before the bytes.
 */
function readEnvelope(
  stream: ServerHttp2Stream,
  readMaxBytes: number,
  arrival: ArrivalLimits | undefined,
  onSlow: (reason: SlowReason) => void,
  onTooLarge: () => void,
): Promise<Envelope> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    let expected = -1;
    // A body trickled in: the stream is reset, as request-arrival.ts does on the connect path.
    const stopWatching =
      arrival === undefined || streamArrived(stream)
        ? undefined
        : watchArrival({ complete: () => streamArrived(stream), bytes: () => received, held: () => false }, arrival, (reason) => {
            onSlow(reason);
            fail(CLIENT_CANCELLED);
            resetSlowStream(stream);
          });
    const cleanup = (): void => {
      stopWatching?.();
      stream.off("data", onData);
      stream.off("end", onEnd);
      stream.off("close", onClose);
    };
    const fail = (error: ConnectError): void => {
      cleanup();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      received += chunk.length;
      if (expected < 0 && received >= PREFIX) {
        const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
        const length = head.readUInt32BE(1);
        if (length > readMaxBytes) {
          onTooLarge();
          fail(new ConnectError(`message size ${length} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted));
          return;
        }
        expected = PREFIX + length;
      }
      if (expected >= 0 && received > expected) fail(new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented));
    };
    const onEnd = (): void => {
      cleanup();
      if (received === 0) {
        reject(new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented));
        return;
      }
      if (expected < 0 || received < expected) {
        reject(new ConnectError("protocol error: promised more bytes than received", Code.InvalidArgument));
        return;
      }
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
      resolve({ flags: all[0]!, data: all.subarray(PREFIX, expected) });
    };
    const onClose = (): void => fail(CLIENT_CANCELLED);
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onClose);
  });
}

async function decodeMessage<I extends DescMessage>(
  schema: I,
  envelope: Envelope,
  compression: Compression | null,
  readMaxBytes: number,
  malformed: MalformedBody | undefined,
  onMalformed: () => void,
): Promise<MessageShape<I>> {
  let bytes = envelope.data;
  if ((envelope.flags & FLAG_COMPRESSED) === FLAG_COMPRESSED) {
    if (compression === null) throw new ConnectError("protocol error: received compressed envelope, but do not know how to decompress", Code.Internal);
    bytes = await compression.decompress(bytes, readMaxBytes);
  }
  try {
    return fromBinary(schema, bytes);
  } catch (error) {
    onMalformed();
    // The parser's own message would describe the caller's bytes: say only which message.
    throw malformed?.error(schema, error) ?? new ConnectError(`request is not a valid ${schema.typeName} message`, Code.InvalidArgument);
  }
}

async function encodeMessage(
  schema: DescMessage,
  message: UnaryResponse["message"],
  compression: Compression | null,
  options: Pick<GrpcUnaryOptions, "writeMaxBytes" | "compressMinBytes">,
): Promise<Buffer> {
  let bytes: Uint8Array = toBinary(schema, message);
  if (bytes.length > options.writeMaxBytes) {
    throw new ConnectError(`message size ${bytes.length} exceeds writeMaxBytes ${options.writeMaxBytes}`, Code.ResourceExhausted);
  }
  let flags = 0;
  if (compression !== null && bytes.length >= options.compressMinBytes) {
    bytes = await compression.compress(bytes);
    flags = FLAG_COMPRESSED;
  }
  const out = Buffer.allocUnsafe(PREFIX + bytes.length);
  out[0] = flags;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, PREFIX);
  return out;
}

function respond(stream: ServerHttp2Stream, header: Headers, trailer: Headers, body: Buffer): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const head = nodeHeaders(header);
  head[http2Constants.HTTP2_HEADER_STATUS] = 200;
  const tail = nodeHeaders(trailer);
  stream.respond(head, { waitForTrailers: true });
  stream.once("wantTrailers", () => {
    if (!stream.destroyed) stream.sendTrailers(tail);
  });
  stream.end(body);
}

/** A trailers-only answer: the status with the response headers, in one HEADERS frame. */
function respondError(stream: ServerHttp2Stream, context: HandlerContext, error: ConnectError): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const trailer = new CallHeaders(context.responseHeader);
  setErrorTrailers(trailer, error);
  context.responseTrailer.forEach((value, key) => {
    if (!trailer.has(key)) trailer.set(key, value);
  });
  // No message follows, so nothing is compressed.
  trailer.delete("grpc-encoding");
  const head = nodeHeaders(trailer);
  head[http2Constants.HTTP2_HEADER_STATUS] = 200;
  stream.respond(head, { endStream: true });
}

function nodeHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}

/** The request metadata as connect hands it to interceptors: no pseudo-headers, repeated values joined. */
function webHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key in headers) {
    if (key.charCodeAt(0) === 58 /* ":" */) continue;
    const value = headers[key];
    if (value === undefined) continue;
    out[key] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function ignore(): void {}

function single(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? (value[0] ?? null) : value;
}
