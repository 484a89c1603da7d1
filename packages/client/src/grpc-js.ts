/**
 * A typed SessionService client for @grpc/grpc-js users:
 *
 * ```ts
 * import { credentials } from "@grpc/grpc-js";
 * import { createSessionGrpcClient } from "@sessiond/client/grpc-js";
 *
 * const sessions = createSessionGrpcClient("sessiond:8080", { credentials: credentials.createInsecure() });
 * const { session } = await sessions.createSession({ userId: "alice", dataSource: "warehouse" });
 * ```
 *
 * Why a thin wrapper over protobuf-es rather than generated grpc-js stubs
 * (proto-loader or protoc-gen-ts): requests and responses are the same message
 * types as the Connect client's (`Session`, `SessionEvent`, ...), serialized by
 * the same protobuf-es code, so one program can mix both clients and nothing
 * else needs generating. Calls go through grpc-js's own Client (its channel,
 * credentials, interceptors, keep-alive and name resolution) with
 * makeUnaryRequest / makeServerStreamRequest.
 *
 * Errors are grpc-js ServiceErrors as grpc-js delivers them (`code`,
 * `details`, `metadata`), with nothing rewritten; the helpers in "./errors.js"
 * (isNotFound, watchCursorOf, ...) read them as they read ConnectErrors.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { SessionService } from "./gen/session/v1/session_pb.js";
import { DEFAULT_TIMEOUT_MS } from "./defaults.js";
import { withRequestId } from "./request-id.js";

export {
  isAborted,
  isDeadlineExceeded,
  isFailedPrecondition,
  isInvalidArgument,
  isNotFound,
  isOutOfRange,
  isPermissionDenied,
  isResourceExhausted,
  isUnauthenticated,
  isUnavailable,
  statusCode,
  statusMessage,
  watchCursorOf,
} from "./errors.js";
export { DEFAULT_TIMEOUT_MS } from "./defaults.js";
export { WATCH_CURSOR_METADATA } from "./watch-protocol.js";


/** Request metadata: grpc-js Metadata, or plain pairs (e.g. `{ authorization: "Bearer ..." }`). */
export type GrpcMetadataInit = grpc.Metadata | Readonly<Record<string, string>>;

export interface SessionGrpcClientOptions {
  /** Default: insecure (h2c). Use `credentials.createSsl(...)` for TLS. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Deadline of each call that passes neither `deadline` nor `timeoutMs`; 0 for none. Default 5 s. */
  readonly timeoutMs?: number;
  /** Sent with every call; a call's own metadata adds to it. */
  readonly metadata?: GrpcMetadataInit;
  /** grpc-js client and channel options: interceptors, keep-alive (`grpc.keepalive_time_ms`), ... */
  readonly clientOptions?: grpc.ClientOptions;
}

export interface GrpcCallOptions {
  /** Absolute deadline; wins over `timeoutMs`. */
  readonly deadline?: Date | number;
  /** Deadline relative to the call's start; 0 for none (a watch that stays open). */
  readonly timeoutMs?: number;
  readonly metadata?: GrpcMetadataInit;
  /** Cancels the call (it then fails with CANCELLED; a watch loop ends with that error). */
  readonly signal?: AbortSignal;
  /** The response headers. */
  readonly onHeader?: (metadata: grpc.Metadata) => void;
  /** The final status with the trailers (e.g. `watch-cursor`). */
  readonly onTrailer?: (status: grpc.StatusObject) => void;
}

type Methods = (typeof SessionService)["method"];

/** A method of the client: a promise for a unary RPC, an async iterable for a server stream. */
export type GrpcMethod<M> = M extends { methodKind: "unary"; input: infer I extends DescMessage; output: infer O extends DescMessage }
  ? (request: MessageInitShape<I>, options?: GrpcCallOptions) => Promise<MessageShape<O>>
  : M extends { methodKind: "server_streaming"; input: infer I extends DescMessage; output: infer O extends DescMessage }
    ? (request: MessageInitShape<I>, options?: GrpcCallOptions) => AsyncIterable<MessageShape<O>>
    : never;

/** Every SessionService method under its camelCase name, as on the Connect client. */
export type SessionGrpcClient = { readonly [K in keyof Methods]: GrpcMethod<Methods[K]> } & {
  /** The underlying grpc-js client (channel state, waitForReady, ...). */
  readonly grpcClient: grpc.Client;
  /** Closes the channel; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void;
};

/**
 * SessionService as a grpc-js ServiceDefinition (paths, protobuf-es
 * serializers), keyed by camelCase method name: for `grpc.Server.addService`
 * or `grpc.makeGenericClientConstructor`.
 */
export const SessionServiceDefinition: grpc.ServiceDefinition = Object.fromEntries(SessionService.methods.map((method) => [method.localName, methodDefinition(method)]));

function methodDefinition(method: DescMethod): grpc.MethodDefinition<unknown, unknown> {
  return {
    path: `/${SessionService.typeName}/${method.name}`,
    originalName: method.name,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
  };
}

function serializer(schema: DescMessage): (value: unknown) => Buffer {
  return (value) => {
    const bytes = toBinary(schema, create(schema, value as MessageInitShape<DescMessage>));
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (bytes: Buffer) => unknown {
  return (bytes) => fromBinary(schema, bytes);
}

/** A SessionService client on its own grpc-js channel to `target` ("host:port", or any grpc-js target). */
export function createSessionGrpcClient(target: string, options: SessionGrpcClientOptions = {}): SessionGrpcClient {
  const client = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), options.clientOptions);
  const defaultTimeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const callSetup = (call: GrpcCallOptions): { metadata: grpc.Metadata; options: grpc.CallOptions } => ({
    metadata: mergeMetadata(options.metadata, call.metadata),
    options: { deadline: deadlineOf(call, defaultTimeoutMs) },
  });
  const methods: Record<string, unknown> = {};
  for (const method of SessionService.methods) {
    const definition = methodDefinition(method);
    if (method.methodKind === "unary") {
      methods[method.localName] = (input: unknown, call: GrpcCallOptions = {}) => {
        // Every CreateSession carries a request_id, so a retry after an unknown outcome creates no duplicate.
        const request = method === SessionService.method.createSession ? withRequestId((input ?? {}) as { requestId?: string }) : input;
        const { metadata, options: callOptions } = callSetup(call);
        return new Promise((resolve, reject) => {
          const onAbort = (): void => unary.cancel();
          const unary = client.makeUnaryRequest(
            definition.path,
            definition.requestSerialize,
            definition.responseDeserialize,
            request,
            metadata,
            callOptions,
            (error, response) => {
              call.signal?.removeEventListener("abort", onAbort);
              if (error !== null) reject(error);
              else resolve(response);
            },
          );
          watchCall(unary, call, onAbort);
        });
      };
    } else if (method.methodKind === "server_streaming") {
      methods[method.localName] = (request: unknown, call: GrpcCallOptions = {}) =>
        readStream(() => {
          const { metadata, options: callOptions } = callSetup(call);
          return client.makeServerStreamRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, request, metadata, callOptions);
        }, call);
    }
  }
  return Object.assign(methods as { [K in keyof Methods]: GrpcMethod<Methods[K]> }, {
    grpcClient: client,
    close: () => client.close(),
  });
}

/** Wires a call to its options' signal and callbacks. */
function watchCall(call: grpc.ClientUnaryCall | grpc.ClientReadableStream<unknown>, options: GrpcCallOptions, onAbort: () => void): void {
  if (options.onHeader !== undefined) call.on("metadata", options.onHeader);
  if (options.onTrailer !== undefined) call.on("status", options.onTrailer);
  if (options.signal === undefined) return;
  if (options.signal.aborted) call.cancel();
  else options.signal.addEventListener("abort", onAbort, { once: true });
}

/**
 * The messages of a server stream. The call starts with the iteration (as
 * with connect's client), so no event of it can go unheard before the loop
 * listens; leaving the loop early (break, throw) cancels it, so the server
 * stops sending.
 */
async function* readStream<T>(start: () => grpc.ClientReadableStream<T>, options: GrpcCallOptions): AsyncGenerator<T, void, undefined> {
  const stream = start();
  const onAbort = (): void => stream.cancel();
  watchCall(stream as grpc.ClientReadableStream<unknown>, options, onAbort);
  try {
    for await (const message of stream) yield message as T;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    // Cancelling a finished call does nothing; an unfinished one reports CANCELLED, which nobody reads any more.
    stream.on("error", () => undefined);
    stream.cancel();
  }
}

function deadlineOf(call: GrpcCallOptions, defaultTimeoutMs: number): grpc.Deadline {
  if (call.deadline !== undefined) return call.deadline;
  const timeoutMs = call.timeoutMs ?? defaultTimeoutMs;
  return timeoutMs > 0 ? Date.now() + timeoutMs : Number.POSITIVE_INFINITY;
}

function mergeMetadata(...all: (GrpcMetadataInit | undefined)[]): grpc.Metadata {
  const merged = new grpc.Metadata();
  for (const init of all) {
    if (init === undefined) continue;
    if (init instanceof grpc.Metadata) merged.merge(init);
    else for (const [key, value] of Object.entries(init)) merged.add(key, value);
  }
  return merged;
}
