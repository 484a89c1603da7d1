/**
 * The RPC server: the Connect router behind one port (see single-port-server),
 * with the request-size limits from the configuration, one log line and the
 * metrics per RPC, and the plain HTTP endpoints (/healthz, /readyz, /metrics)
 * routed before the Connect adapter.
 */
import { Code, ConnectError, createContextValues, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest, ServerHttp2Stream } from "node:http2";
import type { Logger } from "pino";
import type { RejectionReporter } from "../audit/rejection-reporter.js";
import type { RequestGate } from "../auth/request-gate.js";
import type { Config, EdgeConfig, LimitsConfig } from "../config/config.js";
import { BUSY_CEILING_FACTOR } from "../observability/loop-idle.js";
import { addEdgeSource } from "../observability/metrics.js";
import { ConnectionLimits } from "./connection-limits.js";
import { withRequestGate } from "./gated-handler.js";
import { withHttpEndpoints, type HttpEndpointsOptions } from "./http-endpoints.js";
import { rememberResponses, withEarlyHeaders } from "./early-headers.js";
import { createGrpcUnaryHandler, type GrpcUnaryOptions, type MalformedBody } from "./grpc-unary/unary-handler.js";
import { specGrpcMessageTrailers } from "./grpc-unary/grpc-message.js";
import { UnaryMethods } from "./grpc-unary/unary-methods.js";
import { withHttp2Stream } from "./http2-stream.js";
import { createRpcLoggingInterceptor, rpcLabelsOf } from "./rpc-logging.js";
import { initializeRpcMetrics } from "../observability/metrics.js";
import { createShutdownInterceptor, SHUTDOWN_MESSAGE } from "./shutdown-interceptor.js";
import { createShutdownAbortInterceptor } from "./shutdown-abort-interceptor.js";
import { CallsInFlight } from "./calls-in-flight.js";
import { createSinglePortServer, type RequestHandler, type SinglePortServerOptions } from "./single-port-server.js";
import { StartError } from "../startup/start-error.js";

export interface RpcServerOptions {
  readonly routes: (router: ConnectRouter) => void;
  readonly config: Config;
  readonly logger: Logger;
  /** Run inside the logging interceptor, so what they reject is logged too. */
  readonly interceptors?: readonly Interceptor[];
  /**
   * Initial context values of each call from its Node request, or its HTTP/2
   * stream on the fast gRPC unary path (e.g. the peer address, for auth and audit).
   */
  readonly contextValues?: (request: IncomingMessage | Http2ServerRequest | ServerHttp2Stream) => ContextValues;
  /** Serves /healthz, /readyz and /metrics when given. */
  readonly httpEndpoints?: HttpEndpointsOptions;
  /** PEM certificate chain and key, read from config.tls's files by the caller: serve TLS with ALPN h2 and http/1.1. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca?: Buffer };
  /** How long close() lets in-flight calls finish before closing their connections (default 10 s). */
  readonly drainTimeoutMs?: number;
  /** The pre-dispatch gate (auth/request-gate.ts), run before the adapter reads a body. */
  readonly gate?: RequestGate;
  /** Where refused connections and requests are counted and recorded. */
  readonly rejections?: RejectionReporter;
  /** Long-lived streams open now, for the gauge. */
  readonly openStreams?: () => number;
  /** The fast gRPC unary path's answer to a body that does not decode (the API layer's wording and count). */
  readonly malformedBody?: MalformedBody;
  /** Faster encoders of some response schemas for the fast gRPC unary path (the same bytes as toBinary). */
  readonly responseEncoders?: GrpcUnaryOptions["encoders"];
  /** Faster decoders of some request schemas for the fast gRPC unary path (the same messages as fromBinary). */
  readonly requestDecoders?: GrpcUnaryOptions["decoders"];
}

export interface RpcServer {
  /** Base URL clients use, e.g. "http://127.0.0.1:8080" (https with TLS). */
  readonly url: string;
  /** The bound port (useful with PORT=0). */
  readonly port: number;
  /**
   * Stops accepting connections and new calls (GOAWAY on HTTP/2), and starts
   * the drain timer; calls and streams in flight go on. close() finishes it.
   */
  stopAccepting(): void;
  /** Ends streams (UNAVAILABLE), drains in-flight requests and closes every connection. Idempotent. */
  close(): Promise<void>;
  /** Aborted by close(); at most one listener on it per serving path, whatever the calls in flight (tests check it). */
  readonly shutdownSignal: AbortSignal;
}

/** connect's own default: smaller responses are not worth compressing. */
const CONNECT_COMPRESS_MIN_BYTES = 1024;

/** The largest unsigned 32-bit value: connect's own (and the gRPC wire format's) ceiling for one message. */
const MAX_MESSAGE_BYTES = 0xffffffff;

/**
 * The largest response the service can legitimately produce: a full data
 * listing with values, or a full page of sessions with maximal metadata, with
 * room for encoding overhead (JSON escaping can double a string). Connect's
 * default is 4 GiB, which would let a bug stream gigabytes to a client.
 */
export function maxResponseBytes(limits: LimitsConfig): number {
  const PER_ENTRY_OVERHEAD = 1024;
  const dataListing = limits.maxDataKeys * (limits.maxDataKeyLength * 4 + limits.maxDataValueBytes * 2 + PER_ENTRY_OVERHEAD);
  const sessionPage = limits.maxPageSize * (limits.maxMetadataBytes * 2 + PER_ENTRY_OVERHEAD);
  return Math.min(MAX_MESSAGE_BYTES, Math.max(dataListing, sessionPage, limits.maxRequestBytes));
}

export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const { config, logger } = options;
  // Aborting this aborts every handler's context signal, which ends WatchSessions streams;
  // unary handlers do not watch it and finish normally while the server drains. Each path keeps
  // its calls in flight in one set behind one listener (calls-in-flight.ts), not one per call.
  const shutdown = new AbortController();
  /** From stopAccepting() on: streams the app ends on its way down (watches: UNAVAILABLE) are the shutdown, not faults. */
  let stopping = false;
  const rejections = options.rejections;
  const interceptors = [
    createRpcLoggingInterceptor(logger, { shuttingDown: () => stopping || shutdown.signal.aborted }),
    createShutdownInterceptor(shutdown.signal),
    ...(options.interceptors ?? []),
  ];
  const acceptCompression = [compressionGzip, compressionBrotli];
  const readMaxBytes = config.limits.maxRequestBytes;
  const writeMaxBytes = maxResponseBytes(config.limits);
  // Unary gRPC calls skip connect's per-request pipeline (grpc-unary/unary-handler.ts) but run the
  // same implementations through the same interceptors; everything else is connect's.
  const unaryMethods = new UnaryMethods();
  // Not connect's shutdownSignal option: it adds a listener per call to the shared signal.
  const connectInterceptors = [createShutdownAbortInterceptor(new CallsInFlight(shutdown.signal)), ...interceptors];
  const connectHandler = connectNodeAdapter({
    routes: (router) => {
      options.routes(unaryMethods.recording(router));
      // Every routed method's series exist from the start (0), as go-grpc-prometheus's InitializeMetrics does.
      initializeRpcMetrics(router.handlers.map((handler) => rpcLabelsOf(handler.method)));
    },
    interceptors: connectInterceptors,
    acceptCompression,
    readMaxBytes,
    writeMaxBytes,
    // Every call also carries its HTTP/2 stream (WatchSessions writes its fan-out there directly).
    // ... and a way to send its response head before the first message (streams; see early-headers).
    contextValues: (request) => withEarlyHeaders(withHttp2Stream(options.contextValues?.(request) ?? createContextValues(), request), request),
  });
  const grpcUnary = createGrpcUnaryHandler({
    methods: unaryMethods,
    interceptors,
    readMaxBytes,
    writeMaxBytes,
    shutdownSignal: shutdown.signal,
    contextValues: (stream) => withHttp2Stream(options.contextValues?.(stream) ?? createContextValues(), stream),
    acceptCompression,
    compressMinBytes: CONNECT_COMPRESS_MIN_BYTES,
    ...(options.gate === undefined ? {} : { gate: options.gate }),
    ...(options.malformedBody === undefined ? {} : { malformedBody: options.malformedBody }),
    ...(options.responseEncoders === undefined ? {} : { encoders: options.responseEncoders }),
    ...(options.requestDecoders === undefined ? {} : { decoders: options.requestDecoders }),
    arrival: { requestTimeoutMs: config.edge.requestTimeoutMs, minBodyRate: config.edge.minRequestBodyRate },
    onSlow: (stream, reason) => rejections?.report({ kind: "request", reason, outcome: slowOutcome(2), peer: stream.session?.socket?.remoteAddress ?? "" }),
    onGateError: (error) => logger.error({ error: { type: error instanceof Error ? error.name : typeof error } }, "request gate failed"),
  });
  // gRPC calls connect still answers (streams) write grpc-message the spec's way too.
  const rpcHandler: RequestHandler = rememberResponses((request, response) => {
    const contentType = request.headers["content-type"];
    if (contentType !== undefined && contentType.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")) {
      specGrpcMessageTrailers(response);
    }
    connectHandler(request, response);
  });
  const gated =
    options.gate === undefined
      ? rpcHandler
      : withRequestGate(rpcHandler, options.gate, (error) => logger.error({ error: { type: error instanceof Error ? error.name : typeof error } }, "request gate failed"));
  const handler = options.httpEndpoints === undefined ? gated : withHttpEndpoints(gated, options.httpEndpoints);
  const edge = edgeServerOptions(config.edge, rejections);
  const stopEdgeGauges = addEdgeSource(() => ({ connections: edge.connectionLimits.connections, longLivedStreams: options.openStreams?.() ?? 0 }));
  const server = createSinglePortServer({
    handler,
    onRefused: (reason, peer) => rejections?.report({ kind: "connection", reason, outcome: "closed", peer }),
    claimStream: grpcUnary,
    logger,
    ...edge,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: options.drainTimeoutMs }),
  });
  const address = await server.listen(config.port, config.host).catch((error: unknown) => {
    throw listenError(error, config.host, config.port);
  });
  return {
    url: `${options.tls === undefined ? "http" : "https"}://${clientHost(address.address)}:${address.port}`,
    port: address.port,
    shutdownSignal: shutdown.signal,
    stopAccepting(): void {
      stopping = true;
      void server.close();
    },
    async close(): Promise<void> {
      if (!shutdown.signal.aborted) shutdown.abort(new ConnectError(SHUTDOWN_MESSAGE, Code.Unavailable));
      await server.close();
      stopEdgeGauges();
    },
  };
}

/** What a request cut for arriving too slowly got: its HTTP/2 stream reset (RESOURCE_EXHAUSTED, request-arrival.ts), or its HTTP/1 connection closed. */
function slowOutcome(httpVersionMajor: number): string {
  return httpVersionMajor === 2 ? "resource_exhausted" : "closed";
}

/** How often Node checks HTTP/1 connections against headersTimeout and requestTimeout (its default is 30 s). */
const HTTP1_CHECK_INTERVAL_MS = 1000;

/** The connection-level limits of EdgeConfig, as single-port-server options. */
function edgeServerOptions(
  edge: EdgeConfig,
  rejections: RejectionReporter | undefined,
): Required<Pick<SinglePortServerOptions, "http1Options" | "http2Options" | "connectionLimits" | "requestArrival">> {
  return {
    http1Options: {
      headersTimeout: edge.headersTimeoutMs,
      // Node's own wall-clock check is the backstop; request-arrival.ts applies REQUEST_TIMEOUT in loop idle time.
      requestTimeout: edge.requestTimeoutMs * BUSY_CEILING_FACTOR,
      connectionsCheckingInterval: Math.min(HTTP1_CHECK_INTERVAL_MS, edge.headersTimeoutMs),
      maxHeaderSize: edge.maxHeaderListBytes,
    },
    http2Options: {
      settings: { maxConcurrentStreams: edge.http2MaxConcurrentStreams, maxHeaderListSize: edge.maxHeaderListBytes },
      maxHeaderListPairs: 128,
      // Streams the client opens past maxConcurrentStreams are refused; this many refusals end the connection.
      maxSessionRejectedStreams: 100,
      maxSessionInvalidFrames: 1000,
    },
    connectionLimits: new ConnectionLimits({
      maxConnections: edge.maxConnections,
      maxConnectionsPerAddress: edge.maxConnectionsPerAddress,
      idleTimeoutMs: edge.http2IdleTimeoutMs,
      keepaliveIntervalMs: edge.http2KeepaliveIntervalMs,
      keepaliveTimeoutMs: edge.http2KeepaliveTimeoutMs,
      onLimit: (reason, peer) => rejections?.report({ kind: "connection", reason, outcome: "closed", peer }),
    }),
    requestArrival: {
      requestTimeoutMs: edge.requestTimeoutMs,
      minBodyRate: edge.minRequestBodyRate,
      onSlow: (reason, request) =>
        rejections?.report({ kind: "request", reason, outcome: slowOutcome(request.httpVersionMajor), peer: request.socket?.remoteAddress ?? "" }),
    },
  };
}

/** A failed listen as one line for the operator: which address, and why (in use, not allowed, no such address). */
function listenError(error: unknown, host: string, port: number): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const why: Record<string, string> = {
    EADDRINUSE: "the port is already in use",
    EACCES: "permission denied (ports below 1024 need privileges)",
    EADDRNOTAVAIL: "the address is not on this machine",
    ENOTFOUND: "the host name does not resolve",
  };
  return new StartError(`cannot listen on ${host}:${port} (HOST, PORT): ${(code && why[code]) ?? (error instanceof Error ? error.message : String(error))}${code ? ` (${code})` : ""}`);
}

/** A host a client on this machine can connect to: the wildcard addresses are not. */
function clientHost(address: string): string {
  if (address === "0.0.0.0") return "127.0.0.1";
  if (address === "::") return "[::1]";
  return address.includes(":") ? `[${address}]` : address;
}
