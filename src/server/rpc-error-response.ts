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
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, endStreamFlag, errorToJson } from "@connectrpc/connect/protocol-connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";

export function writeRpcError(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  code: Code,
  message: string,
): void {
  const contentType = String(req.headers["content-type"] ?? "");
  const closeAfter = req instanceof http2.Http2ServerRequest ? {} : { connection: "close" };
  const error = new ConnectError(message, code);
  if (/^application\/grpc(-web)?(-text)?([+;]|$)/i.test(contentType)) {
    const headers = { "content-type": contentType, "grpc-status": String(code), "grpc-message": encodeURIComponent(message) };
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
    const body = encodeEnvelope(endStreamFlag, new TextEncoder().encode(JSON.stringify({ error: errorToJson(error, undefined) })));
    (res as http.ServerResponse).writeHead(200, { "content-type": contentType, ...closeAfter });
    res.end(body);
    return;
  }
  const body = JSON.stringify(errorToJson(error, undefined));
  (res as http.ServerResponse).writeHead(codeToHttpStatus(code), { "content-type": "application/json", ...closeAfter });
  res.end(body);
}

