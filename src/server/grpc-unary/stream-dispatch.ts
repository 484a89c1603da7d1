/**
 * Per-stream dispatch on an HTTP/2 server: each new stream goes to a handler
 * that may claim it (the fast gRPC unary path), and otherwise to Node's
 * compatibility layer, which turns it into the server's "request" event
 * (connect's adapter).
 *
 * Node implements the "request" event as a "stream" listener it adds when
 * the first "request" listener is added. That listener is taken off here and
 * called for every stream the handler does not claim, so nothing changes for
 * those streams.
 */
import type { Http2SecureServer, Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";

/** Claims a stream (returns true) or leaves it to the "request" listeners. */
export type StreamClaim = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

type StreamListener = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

/** Call after the server's "request" listener is added. */
export function dispatchStreams(server: Http2Server | Http2SecureServer, claim: StreamClaim): void {
  const compat = server.listeners("stream") as StreamListener[];
  for (const listener of compat) server.off("stream", listener);
  server.on("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
    if (claim(stream, headers)) return;
    for (const listener of compat) listener.call(server, stream, headers, flags, rawHeaders);
  });
}
