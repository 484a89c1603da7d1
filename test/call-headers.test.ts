/**
 * CallHeaders.fromHttp2 reads a stream's request headers in place until the
 * first change or walk: what interceptors see must be what a copy shows
 * (no pseudo-headers, repeated values joined, names case-insensitive), and a
 * change must not lose or reorder the other fields.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http2";
import { CallHeaders } from "../src/server/grpc-unary/call-headers.js";

/** Shaped as Node's HTTP/2 parser hands headers over: no prototype, pseudo-headers first, lower-case names. */
function streamHeaders(): IncomingHttpHeaders {
  const headers = Object.create(null) as IncomingHttpHeaders;
  Object.assign(headers, {
    ":method": "POST",
    ":path": "/session.v1.SessionService/GetSession",
    "content-type": "application/grpc",
    "x-request-id": "r-1",
    "x-multi": ["a", "b"],
    te: "trailers",
  });
  return headers;
}

describe("CallHeaders from an HTTP/2 stream", () => {
  test("reads fields in place: no pseudo-headers, repeated values joined, any case", () => {
    const headers = CallHeaders.fromHttp2(streamHeaders());
    assert.equal(headers.get("X-Request-Id"), "r-1");
    assert.equal(headers.get("x-multi"), "a, b");
    assert.equal(headers.get(":path"), null);
    assert.equal(headers.has(":method"), false);
    assert.equal(headers.get("constructor"), null);
    assert.equal(headers.has("toString"), false);
    assert.equal(headers.has("te"), true);
    assert.deepEqual([...headers], [
      ["content-type", "application/grpc"],
      ["x-request-id", "r-1"],
      ["x-multi", "a, b"],
      ["te", "trailers"],
    ]);
  });

  test("a change keeps every other field in its place", () => {
    const headers = CallHeaders.fromHttp2(streamHeaders());
    headers.set("X-Request-Id", "r-2");
    headers.append("x-multi", "c");
    headers.delete("te");
    headers.append("grpc-timeout", "1S");
    assert.equal(headers.get("x-request-id"), "r-2");
    assert.equal(headers.get("x-multi"), "a, b, c");
    assert.equal(headers.has("te"), false);
    const seen: string[] = [];
    headers.forEach((value, key) => seen.push(`${key}=${value}`));
    assert.deepEqual(seen, ["content-type=application/grpc", "x-request-id=r-2", "x-multi=a, b, c", "grpc-timeout=1S"]);
    assert.deepEqual([...headers.keys()], ["content-type", "x-request-id", "x-multi", "grpc-timeout"]);
  });

  test("the stream's own header object is never changed", () => {
    const source = streamHeaders();
    const headers = CallHeaders.fromHttp2(source);
    headers.set("x-request-id", "r-3");
    headers.delete("content-type");
    assert.equal(source["x-request-id"], "r-1");
    assert.equal(source["content-type"], "application/grpc");
  });
});
