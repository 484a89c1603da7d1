/**
 * Answers an RPC request with an error status, in the protocol the request
 * speaks (by its content type), without reading its body: gRPC and gRPC-Web
 * get a trailers-only response (grpc-status in the headers), the Connect
 * protocol its JSON error (unary) or end-of-stream message (streaming). Used
 * for requests refused before dispatch. On HTTP/1 the connection is closed
 * afterwards, since the unread body would otherwise have to be read first.
 */
import type * as http from "node:http";
import * as http2 from "node:http2";
import { Code } from "@connectrpc/connect";
import { snakeCodeName } from "../observability/rpc-outcome.js";
import { encodeGrpcMessage } from "./grpc-unary/grpc-message.js";

/**
 * HTTP status of a Connect unary error, by code (the Connect protocol's table; only the codes the gate
 * uses need to be right, the rest fall back to 500 as the protocol allows for codes without a mapping here).
 */
const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.Unauthenticated]: 401,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.ResourceExhausted]: 429,
  [Code.Unavailable]: 503,
};
/** Flag of the Connect streaming protocol's end-of-stream message. */
const END_STREAM_FLAG = 0b00000010;

export function writeRpcError(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  code: Code,
  message: string,
): void {
  const contentType = String(req.headers["content-type"] ?? "");
  const closeAfter = req instanceof http2.Http2ServerRequest ? {} : { connection: "close" };
  const error = { code: snakeCodeName(code), message };
  if (/^application\/grpc(-web)?(-text)?([+;]|$)/i.test(contentType)) {
    const headers = { "content-type": contentType, "grpc-status": String(code), "grpc-message": encodeGrpcMessage(message) };
    if (req instanceof http2.Http2ServerRequest && !req.stream.headersSent && !req.stream.destroyed) {
      // Trailers-only: one HEADERS frame that ends the stream.
      req.stream.respond({ ":status": 200, ...headers }, { endStream: true });
      return;
    }
    (res as http.ServerResponse).writeHead(200, { ...headers, ...closeAfter });
    res.end();
    return;
  }
  if (/^application\/connect\+/i.test(contentType)) {
    const json = Buffer.from(JSON.stringify({ error }));
    const body = Buffer.alloc(5 + json.byteLength);
    body[0] = END_STREAM_FLAG;
    body.writeUInt32BE(json.byteLength, 1);
    json.copy(body, 5);
    (res as http.ServerResponse).writeHead(200, { "content-type": contentType, ...closeAfter });
    res.end(body);
    return;
  }
  const body = JSON.stringify(error);
  (res as http.ServerResponse).writeHead(HTTP_STATUS[code] ?? 500, { "content-type": "application/json", ...closeAfter });
  res.end(body);
}

