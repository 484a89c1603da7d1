/**
 * Response headers of a stream sent as soon as the stream is open, instead of
 * with its first message.
 *
 * connect-node writes the response head when the first body bytes exist, so a
 * WatchSessions stream with nothing to send yet (no snapshot asked, no event)
 * showed the client nothing until the first heartbeat: grpcurl printed
 * nothing, and a client could not tell an open watch from a hung connect.
 * Every streaming protocol connect serves puts the status after the head
 * (gRPC trailers, the gRPC-Web trailer frame, Connect's end-of-stream
 * message), so sending the head early changes no outcome.
 *
 * The RPC interceptor calls the context's FLUSH_RESPONSE_HEADERS with the
 * final response headers once the implementation has returned its stream;
 * connect's own writeHead later becomes a no-op for that response.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createContextKey, type ContextValues } from "@connectrpc/connect";

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;

/** Sends the head now with these headers (status 200); undefined outside the Node adapter. */
export const FLUSH_RESPONSE_HEADERS = createContextKey<((headers: Headers) => void) | undefined>(undefined, {
  description: "sessiond flush response headers",
});

const responses = new WeakMap<NodeRequest, NodeResponse>();

/** Wraps a Node request handler so that withEarlyHeaders can find each request's response. */
export function rememberResponses<R extends NodeRequest, S extends NodeResponse, T>(handler: (req: R, res: S) => T): (req: R, res: S) => T {
  return (req, res) => {
    responses.set(req, res);
    return handler(req, res);
  };
}

/** Adds FLUSH_RESPONSE_HEADERS for the request's response (remembered by rememberResponses) to the call's context values. */
export function withEarlyHeaders(values: ContextValues, request: NodeRequest): ContextValues {
  const response = responses.get(request);
  if (response === undefined) return values;
  values.set(FLUSH_RESPONSE_HEADERS, (headers) => flushHead(response, headers));
  return values;
}

function flushHead(response: NodeResponse, headers: Headers): void {
  if (response.headersSent || response.writableEnded || response.destroyed) return;
  const head: Record<string, string> = {};
  headers.forEach((value, key) => {
    head[key] = value;
  });
  response.writeHead(200, head);
  // HTTP/1.1 sends the head with the first write unless told; HTTP/2 sent it in writeHead.
  if ("flushHeaders" in response && typeof response.flushHeaders === "function") response.flushHeaders();
  // connect-node's own writeHead (at the first message) would throw "headers already sent".
  Object.defineProperty(response, "writeHead", { value: () => response, configurable: true, writable: true });
}
