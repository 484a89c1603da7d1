/**
 * The HTTP/2 stream of a call, in the call's context values.
 *
 * Connect handler contexts do not expose the response. A server stream that
 * sends the same bytes to thousands of calls (WatchSessions' fan-out) needs it:
 * pushing every message of every stream through connect's per-message pipeline
 * (serialize, envelope, compression check, join, catch, write, each an async
 * iteration step) costs far more than the one write of bytes serialized once
 * per event. See src/api/watch-direct.ts for the one user and its rules.
 */
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest, ServerHttp2Stream } from "node:http2";
import { createContextKey, type ContextValues } from "@connectrpc/connect";

/** The call's HTTP/2 stream; undefined for HTTP/1.1 calls. */
export const HTTP2_STREAM = createContextKey<ServerHttp2Stream | undefined>(undefined, { description: "sessiond http2 stream" });

/** Adds the request's HTTP/2 stream (if it has one) to the call's context values. */
export function withHttp2Stream(values: ContextValues, request: IncomingMessage | Http2ServerRequest | ServerHttp2Stream): ContextValues {
  if ("stream" in request) values.set(HTTP2_STREAM, request.stream);
  else if ("session" in request) values.set(HTTP2_STREAM, request);
  return values;
}
