/**
 * One TCP port for gRPC (HTTP/2 over plaintext, "h2c"), gRPC-Web and the
 * Connect protocol (HTTP/1.1 or HTTP/2).
 *
 * Node's http2 server only falls back to HTTP/1 (`allowHTTP1`) behind TLS,
 * because it relies on ALPN. In plaintext the only signal is the first bytes of
 * the connection (nodejs/node#44887), so a plain `net.Server` accepts the
 * socket, reads until the HTTP/2 connection preface is either complete or ruled
 * out, puts the bytes back (`unshift`) and hands the socket to an `http2` or an
 * `http` server that never listens itself. Both servers run the same handler.
 *
 * The wrapper also owns graceful shutdown, because neither inner server knows
 * about the other's connections: close() stops accepting, ends idle HTTP/1
 * keep-alive connections at once and busy ones after their last response, sends
 * GOAWAY on every HTTP/2 session (which closes once its streams finish), and
 * destroys whatever is left after a drain timeout.
 *
 * With TLS configured the port speaks TLS only, and ALPN replaces the sniffing:
 * Node's http2 secure server with `allowHTTP1` listens itself, negotiates "h2"
 * or "http/1.1" per connection and serves both through the same handler. The
 * same drain logic applies, to the TLS sockets.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type * as stream from "node:stream";
import type * as tls from "node:tls";
import type { Logger } from "pino";
import { closeGracefully, type ConnectionLimits } from "./connection-limits.js";
import { dispatchStreams, type StreamClaim } from "./grpc-unary/stream-dispatch.js";
import { classifyPreface, type PrefaceKind } from "./preface.js";
import { watchRequestArrival, type RequestArrivalOptions } from "./request-arrival.js";
import { loopAwareDeadline } from "../observability/loop-aware-deadline.js";

/** A request listener for both servers, such as the one connectNodeAdapter returns. */
export type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** Why a connection was closed before a request could be served (SinglePortServerOptions.onRefused). */
export type RefusedConnection = "preface_timeout" | "http1_bad_request" | "http1_headers_too_large" | "http1_request_timeout";

type Http1Refusal = Exclude<RefusedConnection, "preface_timeout">;

/** A connection's own failure (the peer went away), not a refusal. */
const TRANSPORT_ERRORS: ReadonlySet<string | undefined> = new Set(["ECONNRESET", "EPIPE", "ETIMEDOUT"]);

/** Node's answers to an HTTP/1 request its parser refused (as its default clientError handler writes them). */
const CLIENT_ERROR_RESPONSES: Readonly<Record<Http1Refusal, string>> = {
  http1_bad_request: "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
  http1_headers_too_large: "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
  http1_request_timeout: "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n",
};

export interface SinglePortServerOptions {
  /** Serves every request, HTTP/1.1 or HTTP/2, that `claimStream` leaves. */
  readonly handler: RequestHandler;
  /** May take an HTTP/2 stream before it becomes a request (the fast gRPC unary path). */
  readonly claimStream?: StreamClaim;
  readonly logger: Logger;
  /**
   * How long a new connection may take to send enough bytes to tell HTTP/1
   * from HTTP/2. A connection that stays silent this long is closed, so idle
   * sockets cannot pile up before either server's own timeouts apply.
   */
  readonly prefaceTimeoutMs?: number;
  /** How long close() waits for in-flight requests before destroying their connections. */
  readonly drainTimeoutMs?: number;
  /** Options of the inner HTTP/1 server, e.g. headersTimeout and requestTimeout; Node's defaults otherwise. */
  readonly http1Options?: http.ServerOptions;
  /** Options of the HTTP/2 server (plaintext or TLS), e.g. settings.maxConcurrentStreams; Node's defaults otherwise. */
  readonly http2Options?: http2.ServerOptions;
  /** Connection caps, HTTP/2 idle and keep-alive rules (see connection-limits.ts). */
  readonly connectionLimits?: ConnectionLimits;
  /** Bounds on how slowly a request may arrive (see request-arrival.ts). */
  readonly requestArrival?: RequestArrivalOptions;
  /**
   * Told of every connection closed for what it sent or failed to send before
   * a request could be served: silent past prefaceTimeoutMs, or an HTTP/1
   * request Node's parser refused (answered 400, 408 or 431, then closed).
   */
  readonly onRefused?: (reason: RefusedConnection, peer: string) => void;
  /**
   * PEM certificate chain and private key: serve TLS (ALPN h2 and http/1.1) instead of plaintext.
   * With `ca` (PEM CA certificates, TLS_CLIENT_CA_FILE) the server also asks every client for a
   * certificate and verifies it against `ca` only; see createSecureServer for why a missing or
   * unverified one does not fail the handshake.
   */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer; readonly ca?: string | Buffer };
}

export interface SinglePortServer {
  /** Starts listening; port 0 picks a free port. Resolves with the bound address. */
  listen(port: number, host: string): Promise<net.AddressInfo>;
  /**
   * Stops accepting connections, lets in-flight requests finish (up to the
   * drain timeout) and resolves when every connection is closed. Idempotent.
   */
  close(): Promise<void>;
}

const DEFAULT_PREFACE_TIMEOUT_MS = 10_000;
const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

export function createSinglePortServer(options: SinglePortServerOptions): SinglePortServer {
  const { handler, logger } = options;
  const prefaceTimeoutMs = options.prefaceTimeoutMs ?? DEFAULT_PREFACE_TIMEOUT_MS;
  const drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;

  /** Every accepted connection, until it closes. */
  const sockets = new Set<net.Socket>();
  /** In-flight requests per HTTP/1 connection; a connection that is absent is idle. */
  const http1Busy = new Map<net.Socket, number>();
  /** Connections handed to the HTTP/2 server; their sessions close them. */
  const http2Sockets = new WeakSet<net.Socket>();
  const http2Sessions = new Set<http2.ServerHttp2Session>();
  /** Set once close() is called: from then on nothing new is accepted. */
  let closing = false;
  let closed: Promise<void> | undefined;

  /** Serves one HTTP/1 request, counting it as in flight on its connection. */
  function serveHttp1(req: http.IncomingMessage, res: http.ServerResponse): void {
    const socket = req.socket;
    if (options.requestArrival !== undefined) watchRequestArrival(req, res, options.requestArrival);
    options.connectionLimits?.busy(socket);
    http1Busy.set(socket, (http1Busy.get(socket) ?? 0) + 1);
    if (closing) {
      // Answer, but tell the client not to reuse this connection.
      res.setHeader("Connection", "close");
    }
    res.once("close", () => {
      const left = (http1Busy.get(socket) ?? 1) - 1;
      if (left > 0) {
        http1Busy.set(socket, left);
        return;
      }
      http1Busy.delete(socket);
      if (closing) socket.end();
      // A kept-alive connection between requests holds nothing: evictable at the total cap.
      else options.connectionLimits?.markIdle(socket, () => socket.destroy());
    });
    handler(req, res);
  }

  function serveHttp2(req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void {
    if (options.requestArrival !== undefined) watchRequestArrival(req, res, options.requestArrival);
    handler(req, res);
  }

  function trackSession(session: http2.ServerHttp2Session): void {
    http2Sessions.add(session);
    options.connectionLimits?.watchSession(session);
    session.once("close", () => http2Sessions.delete(session));
    if (closing) closeGracefully(session);
  }

  const logSessionError = (err: Error): void => {
    logger.debug({ error: { type: err.name, message: err.message } }, "http2 session error");
  };

  const http1Server = http.createServer(options.http1Options ?? {});
  http1Server.on("request", serveHttp1);
  // Node's default answer, and a count of it: a parser refusal is what a flood of garbage or slow headers looks like.
  http1Server.on("clientError", (err: NodeJS.ErrnoException, socket: stream.Duplex) => {
    if (TRANSPORT_ERRORS.has(err.code) || !(socket instanceof net.Socket)) {
      socket.destroy();
      return;
    }
    const reason: Http1Refusal =
      err.code === "HPE_HEADER_OVERFLOW" ? "http1_headers_too_large" : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "http1_request_timeout" : "http1_bad_request";
    options.onRefused?.(reason, socket.remoteAddress ?? "");
    if (socket.writable && !http1Busy.has(socket)) socket.write(CLIENT_ERROR_RESPONSES[reason]);
    socket.destroy();
  });

  const http2Server = http2.createServer(options.http2Options ?? {});
  http2Server.on("request", serveHttp2);
  http2Server.on("session", trackSession);
  http2Server.on("sessionError", logSessionError);
  if (options.claimStream !== undefined) dispatchStreams(http2Server, options.claimStream);

  /**
   * With TLS: the listening server. Connections count from the TLS handshake
   * ("secureConnection"); accepted sockets still in the handshake are only
   * kept for the drain timeout to destroy (the handshake has its own timeout).
   */
  const secureServer = options.tls === undefined ? undefined : createSecureServer(options.tls);
  const handshaking = new Set<net.Socket>();
  function createSecureServer(tlsOptions: NonNullable<SinglePortServerOptions["tls"]>): http2.Http2SecureServer {
    const server = http2.createSecureServer({
      ...options.http2Options,
      cert: tlsOptions.cert,
      key: tlsOptions.key,
      allowHTTP1: true,
      handshakeTimeout: prefaceTimeoutMs,
      // Mutual TLS: request a client certificate and verify it against the configured CA alone (not
      // the system roots). The handshake is not refused for a missing or unverified certificate
      // (rejectUnauthorized: false): a client certificate is one credential among others (a bearer
      // token over TLS is fine without one), and refusing at the handshake would give the client a
      // bare connection reset and leave no audit record. Instead the socket's `authorized` says
      // whether the certificate verified; peer.ts hands only a verified one to the authenticator,
      // and a call with no other credential gets UNAUTHENTICATED.
      ...(tlsOptions.ca === undefined ? {} : { ca: tlsOptions.ca, requestCert: true, rejectUnauthorized: false }),
    });
    server.on("connection", (socket: net.Socket) => {
      if (options.connectionLimits !== undefined && !options.connectionLimits.admit(socket)) {
        socket.destroy();
        return;
      }
      socket.setNoDelay(true);
      handshaking.add(socket);
      socket.once("close", () => handshaking.delete(socket));
      socket.on("error", (err: Error) => logger.debug({ error: { type: err.name, message: err.message } }, "connection error"));
      if (closing) socket.destroy();
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      sockets.add(socket);
      if (socket.alpnProtocol === "h2") http2Sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        http1Busy.delete(socket);
      });
    });
    server.on("tlsClientError", (err: Error) => logger.debug({ error: { type: err.name, message: err.message } }, "tls handshake error"));
    // With allowHTTP1, HTTP/1.1 requests arrive here too, as http.IncomingMessage.
    server.on("request", (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      if (req instanceof http2.Http2ServerRequest) serveHttp2(req, res as http2.Http2ServerResponse);
      else serveHttp1(req, res as http.ServerResponse);
    });
    server.on("session", trackSession);
    server.on("sessionError", logSessionError);
    if (options.claimStream !== undefined) dispatchStreams(server, options.claimStream);
    return server;
  }

  const tcpServer = net.createServer({ noDelay: true }, (socket) => {
    // Over a cap: closed before a byte is read (see connection-limits.ts).
    if (options.connectionLimits !== undefined && !options.connectionLimits.admit(socket)) {
      socket.on("error", () => {});
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      http1Busy.delete(socket);
    });
    // Resets and broken pipes are routine for a server; without a listener they would crash the process.
    socket.on("error", (err: Error) => {
      logger.debug({ error: { type: err.name, message: err.message } }, "connection error");
    });
    if (closing) {
      socket.destroy();
      return;
    }
    sniff(socket);
  });

  /** Reads until the protocol is known, then gives the socket, with its bytes put back, to the right server. */
  function sniff(socket: net.Socket): void {
    let head: Buffer = Buffer.alloc(0);
    // Loop-aware: a preface that sat unread while this process was busy is not a silent peer.
    const timer = loopAwareDeadline(prefaceTimeoutMs, () => {
      options.onRefused?.("preface_timeout", socket.remoteAddress ?? "");
      socket.destroy();
    });
    // Until it says which protocol it speaks, a connection holds nothing: the first to go at the total cap.
    options.connectionLimits?.markIdle(socket, () => socket.destroy());
    const stop = (): void => {
      options.connectionLimits?.busy(socket);
      timer.cancel();
      socket.off("data", onData);
      socket.off("end", onEnd);
    };
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const kind = classifyPreface(head);
      if (kind === "undecided") return;
      stop();
      socket.pause();
      socket.unshift(head);
      handOff(socket, kind);
    };
    // The peer finished sending before the protocol was clear: nothing to serve.
    const onEnd = (): void => {
      stop();
      socket.destroy();
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.once("close", stop);
  }

  function handOff(socket: net.Socket, kind: Exclude<PrefaceKind, "undecided">): void {
    if (closing) {
      socket.destroy();
      return;
    }
    if (kind === "http2") {
      // The HTTP/2 session takes over the socket's handle and first drains what
      // is buffered (the unshifted bytes) itself; resuming the stream here would
      // feed those bytes to no one and break the preface.
      http2Sockets.add(socket);
      http2Server.emit("connection", socket);
    } else {
      // The HTTP/1 parser reads buffered bytes through "data" events, which only
      // flow once the stream paused above is resumed.
      http1Server.emit("connection", socket);
      socket.resume();
    }
  }

  async function drain(): Promise<void> {
    const listener: net.Server = secureServer ?? tcpServer;
    options.connectionLimits?.stop();
    const allClosed = new Promise<void>((resolve) => listener.close(() => resolve()));
    // Stops its timeout timer; the error it reports (it never listened) means nothing here.
    http1Server.close(() => {});
    for (const socket of sockets) {
      // Still sniffing, or HTTP/1 and idle: nothing is lost by closing now.
      if (!http1Busy.has(socket) && !http2Sockets.has(socket)) socket.destroy();
    }
    for (const session of http2Sessions) closeGracefully(session);
    const force = setTimeout(() => {
      if (sockets.size > 0) logger.warn({ connections: sockets.size }, "drain timeout: closing remaining connections");
      for (const socket of [...sockets, ...handshaking]) socket.destroy();
    }, drainTimeoutMs);
    try {
      await allClosed;
    } finally {
      clearTimeout(force);
    }
  }

  return {
    listen(port: number, host: string): Promise<net.AddressInfo> {
      const listener: net.Server = secureServer ?? tcpServer;
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        listener.once("error", onError);
        listener.listen(port, host, () => {
          listener.off("error", onError);
          listener.on("error", (err: Error) => logger.error({ error: { type: err.name, message: err.message } }, "server error"));
          // Node enforces headersTimeout and requestTimeout (the slowloris
          // defences) from a timer it starts on the server's "listening" event.
          // The inner server never listens itself, so it is told here; close()
          // stops that timer again through http1Server.close().
          http1Server.emit("listening");
          const address = listener.address();
          if (address === null || typeof address === "string") {
            reject(new Error("server is not listening on a TCP port"));
            return;
          }
          resolve(address);
        });
      });
    },
    close(): Promise<void> {
      if (closed === undefined) {
        closing = true;
        closed = drain();
      }
      return closed;
    },
  };
}
