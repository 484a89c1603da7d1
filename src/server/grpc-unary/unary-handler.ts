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
import { create, fromBinary, isMessage, toBinary, type DescMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
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
import { PRINCIPAL, type Principal } from "../../auth/principal.js";
import { RELEASE_NOTHING, type GateDecision, type RequestGate } from "../../auth/request-gate.js";
import { CALL_ABORT, CallAbort } from "../call-abort.js";
import { CallsInFlight } from "../calls-in-flight.js";
import { negotiateCompression, parseGrpcTimeout, setErrorTrailers, type Compression } from "./grpc-protocol.js";
import { CallHeaders } from "./call-headers.js";
import { ArrivalWatcher, resetSlowStream, streamArrived, type Arrival, type ArrivalLimits, type SlowReason, type WatchedArrival } from "../request-arrival.js";
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
  /** Encoders that write a response schema's bytes faster than toBinary (the same bytes); others use toBinary. */
  readonly encoders?: ReadonlyMap<DescMessage, (message: Message) => Uint8Array>;
  /** Decoders that read a request schema's bytes faster than fromBinary (the same message, the same errors); others use fromBinary. */
  readonly decoders?: ReadonlyMap<DescMessage, (bytes: Uint8Array) => Message>;
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

/** A call's own context and the request it gave the interceptor chain, for the chain's innermost step. */
interface CallStart {
  readonly context: HandlerContext;
  readonly request: UnaryRequest;
}

const CALL_START = createContextKey<CallStart | undefined>(undefined, { description: "sessiond grpc unary call context" });

const DEADLINE_EXCEEDED = (): ConnectError => new ConnectError("the operation timed out", Code.DeadlineExceeded);
/** A reason given up front spares a DOMException (and its stack) per cancelled call. */
const CLIENT_CANCELLED = new ConnectError("the client cancelled the call", Code.Canceled);

export function createGrpcUnaryHandler(options: GrpcUnaryOptions): GrpcUnaryHandler {
  // One shutdown listener for all calls in flight, rather than one per call as connect links them.
  const inFlight = new CallsInFlight(options.shutdownSignal);
  const acceptCompression = [...options.acceptCompression];
  const encoders = options.encoders ?? new Map<DescMessage, (message: Message) => Uint8Array>();
  const decoders = options.decoders ?? new Map<DescMessage, (bytes: Uint8Array) => Message>();
  // One timer for the bodies of all calls being read, rather than one per call.
  const arrivals = options.arrival === undefined ? undefined : new ArrivalWatcher(options.arrival);
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
    let principal: Principal | undefined;
    if (options.gate !== undefined) {
      // Before a byte of the body is read: a caller without valid credentials costs no read and no parse.
      // Awaited only when the gate must wait (a JWT): most calls are admitted without a turn of the event loop.
      const admission = admit(stream, headers, options.gate, options.onGateError);
      const admitted = admission instanceof Promise ? await admission : admission;
      if (admitted === false) return;
      principal = admitted.principal;
    }
    const timeout = parseGrpcTimeout(single(headers["grpc-timeout"]));
    const compression = negotiateCompression(acceptCompression, single(headers["grpc-encoding"]), single(headers["grpc-accept-encoding"]));
    // The signal is made only if someone asks for it (call-abort.ts).
    const abort = new CallAbort();
    const timeoutMs = timeout.timeoutMs;
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    const url = `http://${single(headers[":authority"]) ?? "localhost"}${headers[":path"] ?? ""}`;
    const requestHeader = CallHeaders.fromHttp2(headers);
    const values = options.contextValues(stream);
    // The gate's principal goes straight into the call's values (connect's path hands it over through peer.ts).
    if (principal !== undefined) values.set(PRINCIPAL, principal);
    const context = new UnaryCallContext(spec, url, abort, deadline, requestHeader, contentType, values);
    values.set(CALL_ABORT, abort);
    // The deadline, the server's shutdown and a client's reset abort the handler's signal, as in connect.
    // The caller's own deadline is wall time by definition (its clock runs whether or not this process is busy).
    const timer = timeoutMs === undefined || timeoutMs <= 0 ? undefined : setTimeout(() => abort.abort(DEADLINE_EXCEEDED()), timeoutMs);
    if (timeoutMs !== undefined && timeoutMs <= 0) abort.abort(DEADLINE_EXCEEDED());
    const slot = inFlight.add(abort);
    // One listener for a client that leaves, whether its body is still coming or the handler runs.
    const read = new EnvelopeRead(stream, options.readMaxBytes);
    const onClose = (): void => {
      abort.abort(CLIENT_CANCELLED);
      read.fail(CLIENT_CANCELLED);
    };
    stream.on("close", onClose);
    if (compression.response !== null) context.responseHeader.set("grpc-encoding", compression.response.name);
    try {
      if (compression.error !== undefined) throw compression.error;
      if (timeout.error !== undefined) throw timeout.error;
      const envelope = await read.start(arrivals, (reason) => options.onSlow?.(stream, reason), () =>
        options.malformedBody?.report(`${spec.method.parent.typeName}/${spec.method.name}`, values, "too_large"),
      );
      // Awaited only when compressed: an uncompressed message costs no extra turn.
      const compressed = (envelope.flags & FLAG_COMPRESSED) === FLAG_COMPRESSED;
      const bytes = compressed ? await decompress(envelope.data, compression.request, options.readMaxBytes) : envelope.data;
      const input = parseMessage(spec.method.input, bytes, decoders.get(spec.method.input), options.malformedBody, () =>
        options.malformedBody?.report(`${spec.method.parent.typeName}/${spec.method.name}`, values),
      );
      const request = new UnaryCallRequest(spec, url, abort, requestHeader, values, input);
      values.set(CALL_START, { context, request });
      const response = await chainFor(spec)(request);
      const message = serializeMessage(spec.method.output, response.message, options.writeMaxBytes, encoders.get(spec.method.output));
      const compress = compression.response !== null && message.length >= options.compressMinBytes ? compression.response : null;
      const body = compress === null ? envelope5(0, message) : envelope5(FLAG_COMPRESSED, await compress.compress(message));
      respond(stream, response.header, response.trailer, body);
    } catch (error) {
      // As connect does: anything but a ConnectError is an internal error whose message stays in the process.
      respondError(stream, context, error instanceof ConnectError ? error : new ConnectError("internal error", Code.Internal, undefined, undefined, error));
    } finally {
      stream.off("close", onClose);
      if (timer !== undefined) clearTimeout(timer);
      inFlight.delete(slot);
    }
  }
}

/**
 * Runs the gate on a stream's headers. A refusal is answered trailers-only
 * with the gate's code and message (the gate has recorded it); an admitted
 * call gets its principal (for its context values), and its slot is freed
 * when the stream closes.
 */
function admit(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, gate: RequestGate, onError?: (error: unknown) => void): Admission | Promise<Admission> {
  const authorization = headers.authorization;
  const actAs = headers[ACT_AS_HEADER];
  const credentials = { authorization: typeof authorization === "string" ? authorization : null, actAs: typeof actAs === "string" ? actAs : null };
  let decided: GateDecision | Promise<GateDecision>;
  try {
    decided = gate.decide(headers[":path"] ?? "", credentials, peerOf(stream), stream.session ?? stream);
  } catch (error) {
    return gateFailed(stream, error, onError);
  }
  // Most calls are judged at once; a JWT is verified first.
  if (decided instanceof Promise) return decided.then((decision) => admitted(stream, decision), (error: unknown) => gateFailed(stream, error, onError));
  return admitted(stream, decided);
}

/** A call's admission: false when it was refused (and answered) or its stream is gone, else its principal. */
type Admission = false | { readonly principal: Principal | undefined };

function gateFailed(stream: ServerHttp2Stream, error: unknown, onError?: (error: unknown) => void): false {
  onError?.(error);
  if (!stream.destroyed) stream.close(http2Constants.NGHTTP2_INTERNAL_ERROR);
  return false;
}

/** Answers a refusal; holds an admitted call's slot until its stream closes. */
function admitted(stream: ServerHttp2Stream, decision: GateDecision): Admission {
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
  // Most calls hold no slot: no listener for them.
  if (decision.release !== RELEASE_NOTHING) stream.once("close", decision.release);
  return decision;
}

/*
 * A call's context and request, with `signal` a getter that makes the signal
 * only when asked (call-abort.ts). Classes, because an object literal with a
 * getter is built by a runtime call that costs more than the signal saved.
 * A copy made by spreading one keeps every field but `signal`, which lives on
 * the prototype: the innermost step (invoker) hands the handler the call's
 * own signal whatever an interceptor passed on.
 */
class UnaryCallContext implements HandlerContext {
  readonly service: HandlerContext["service"];
  readonly method: HandlerContext["method"];
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly responseHeader: Headers;
  readonly responseTrailer: Headers;
  readonly timeoutMs: () => number | undefined;

  constructor(
    spec: UnaryMethodSpec,
    readonly url: string,
    private readonly abort: CallAbort,
    deadline: number | undefined,
    readonly requestHeader: Headers,
    contentType: string,
    readonly values: ContextValues,
  ) {
    this.service = spec.method.parent;
    this.method = spec.method;
    this.responseHeader = CallHeaders.of(HEADER_CONTENT_TYPE, contentType);
    this.responseTrailer = CallHeaders.of("grpc-status", "0");
    this.timeoutMs = deadline === undefined ? noTimeout : () => deadline - Date.now();
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }
}

class UnaryCallRequest implements UnaryRequest {
  readonly stream = false;
  readonly service: UnaryRequest["service"];
  readonly method: UnaryRequest["method"];
  readonly requestMethod = "POST";

  constructor(
    spec: UnaryMethodSpec,
    readonly url: string,
    private readonly abort: CallAbort,
    readonly header: Headers,
    readonly contextValues: ContextValues,
    readonly message: UnaryRequest["message"],
  ) {
    this.service = spec.method.parent;
    this.method = spec.method;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }
}

function noTimeout(): undefined {
  return undefined;
}

/** The innermost step: the implementation, as connect's invokeUnaryImplementation calls it. */
function invoker(spec: UnaryMethodSpec): (req: UnaryRequest) => Promise<UnaryResponse> {
  return async (req) => {
    const start = req.contextValues.get(CALL_START);
    if (start === undefined) throw new ConnectError("call context missing", Code.Internal);
    const { context } = start;
    // The request the chain was given, passed on as it was: the call's own context serves (no copy, and no signal made).
    const handlerContext: HandlerContext =
      req === start.request
        ? context
        : {
            service: req.service,
            method: context.method,
            protocolName: context.protocolName,
            requestMethod: context.requestMethod,
            url: context.url,
            signal: (req.signal as AbortSignal | undefined) ?? context.signal,
            timeoutMs: context.timeoutMs,
            requestHeader: req.header,
            responseHeader: context.responseHeader,
            responseTrailer: context.responseTrailer,
            values: req.contextValues,
          };
    const output = await spec.impl(req.message, handlerContext);
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
 * fail() ends the read (the client left), before or while it runs.
 */
class EnvelopeRead implements Arrival {
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private expected = -1;
  private settle: { resolve(envelope: Envelope): void; reject(error: ConnectError): void } | undefined = undefined;
  private failure: ConnectError | undefined = undefined;
  private done = false;
  private watched: WatchedArrival | undefined = undefined;
  private onTooLarge: () => void = ignore;

  constructor(
    private readonly stream: ServerHttp2Stream,
    private readonly readMaxBytes: number,
  ) {}

  start(arrivals: ArrivalWatcher | undefined, onSlow: (reason: SlowReason) => void, onTooLarge: () => void): Promise<Envelope> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      this.onTooLarge = onTooLarge;
      const stream = this.stream;
      // A body trickled in: the stream is reset, as request-arrival.ts does on the connect path.
      if (arrivals !== undefined && !streamArrived(stream)) {
        this.watched = arrivals.watch(this, (reason) => {
          onSlow(reason);
          this.fail(CLIENT_CANCELLED);
          resetSlowStream(stream);
        });
      }
      stream.on("data", this.onData);
      stream.once("end", this.onEnd);
    });
  }

  complete(): boolean {
    return streamArrived(this.stream);
  }

  bytes(): number {
    return this.received;
  }

  held(): boolean {
    return false;
  }

  fail(error: ConnectError): void {
    if (this.done) return;
    if (this.settle === undefined) {
      this.failure ??= error;
      return;
    }
    this.finish();
    this.settle.reject(error);
  }

  private finish(): void {
    this.done = true;
    this.watched?.stop();
    this.watched = undefined;
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.chunks.push(chunk);
    this.received += chunk.length;
    if (this.expected < 0 && this.received >= PREFIX) {
      const head = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks);
      const length = head.readUInt32BE(1);
      if (length > this.readMaxBytes) {
        this.onTooLarge();
        this.fail(new ConnectError(`message size ${length} is larger than configured readMaxBytes ${this.readMaxBytes}`, Code.ResourceExhausted));
        return;
      }
      this.expected = PREFIX + length;
    }
    if (this.expected >= 0 && this.received > this.expected) this.fail(new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented));
  };

  private readonly onEnd = (): void => {
    if (this.done) return;
    this.finish();
    const settle = this.settle!;
    if (this.received === 0) {
      settle.reject(new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented));
      return;
    }
    if (this.expected < 0 || this.received < this.expected) {
      settle.reject(new ConnectError("protocol error: promised more bytes than received", Code.InvalidArgument));
      return;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.received);
    // A plain view: Buffer's subarray makes a Buffer through its species constructor, which costs more.
    settle.resolve({ flags: all[0]!, data: new Uint8Array(all.buffer, all.byteOffset + PREFIX, this.expected - PREFIX) });
  };
}

async function decompress(bytes: Uint8Array, compression: Compression | null, readMaxBytes: number): Promise<Uint8Array> {
  if (compression === null) throw new ConnectError("protocol error: received compressed envelope, but do not know how to decompress", Code.Internal);
  return compression.decompress(bytes, readMaxBytes);
}

function parseMessage<I extends DescMessage>(
  schema: I,
  bytes: Uint8Array,
  decode: ((bytes: Uint8Array) => Message) | undefined,
  malformed: MalformedBody | undefined,
  onMalformed: () => void,
): MessageShape<I> {
  try {
    return decode === undefined ? fromBinary(schema, bytes) : (decode(bytes) as MessageShape<I>);
  } catch (error) {
    onMalformed();
    // The parser's own message would describe the caller's bytes: say only which message.
    throw malformed?.error(schema, error) ?? new ConnectError(`request is not a valid ${schema.typeName} message`, Code.InvalidArgument);
  }
}

function serializeMessage(schema: DescMessage, message: UnaryResponse["message"], writeMaxBytes: number, encode?: (message: Message) => Uint8Array): Uint8Array {
  const bytes = encode === undefined ? toBinary(schema, message) : encode(message);
  if (bytes.length > writeMaxBytes) throw new ConnectError(`message size ${bytes.length} exceeds writeMaxBytes ${writeMaxBytes}`, Code.ResourceExhausted);
  return bytes;
}

/** One length-prefixed message. */
function envelope5(flags: number, bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PREFIX + bytes.length);
  out[0] = flags;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, PREFIX);
  return out;
}

/** The trailers a stream sends when Node asks for them ("wantTrailers", once per stream). */
const TRAILERS = Symbol("sessiond trailers");
type RespondingStream = ServerHttp2Stream & { [TRAILERS]?: OutgoingHttpHeaders };

/** One listener function for every stream (no closure per call); `this` is the stream. */
function sendTrailers(this: RespondingStream): void {
  const tail = this[TRAILERS];
  this[TRAILERS] = undefined;
  if (tail !== undefined && !this.destroyed) this.sendTrailers(tail);
}

const WAIT_FOR_TRAILERS = Object.freeze({ waitForTrailers: true });

function respond(stream: RespondingStream, header: Headers, trailer: Headers, body: Buffer): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const head = nodeHeaders(header);
  head[http2Constants.HTTP2_HEADER_STATUS] = 200;
  stream[TRAILERS] = nodeHeaders(trailer);
  stream.respond(head, WAIT_FOR_TRAILERS);
  stream.on("wantTrailers", sendTrailers);
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

function ignore(): void {}

function single(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  return Array.isArray(value) ? (value[0] ?? null) : value;
}
