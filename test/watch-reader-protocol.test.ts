/**
 * WatchReader's gRPC parsing against a hand-driven node:http2 server that
 * sends exactly the bytes under test: messages cut at every byte (so an
 * envelope's 5-byte prefix is split too), several messages in one DATA frame,
 * a trailers-only error, a stream that ends without a status, and a
 * compressed message that nobody negotiated.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import http2 from "node:http2";
import { setImmediate as turn } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createWatchReader, EventType, WatchSessionsResponseSchema, type WatchSessionsResponse } from "@sessiond/client";

/** What the server does with the next WatchSessions call. */
type Script = (stream: http2.ServerHttp2Stream) => Promise<void>;

function envelope(message: WatchSessionsResponse, flags = 0): Buffer {
  const bytes = toBinary(WatchSessionsResponseSchema, message);
  const out = Buffer.alloc(5 + bytes.byteLength);
  out.writeUInt8(flags, 0);
  out.writeUInt32BE(bytes.byteLength, 1);
  out.set(bytes, 5);
  return out;
}

function event(cursor: string): WatchSessionsResponse {
  return create(WatchSessionsResponseSchema, { event: { type: EventType.HEARTBEAT, cursor } });
}

const OK_HEADERS = { ":status": 200, "content-type": "application/grpc+proto" };

describe("WatchReader parsing the gRPC wire", () => {
  let server: http2.Http2Server;
  let url = "";
  let script: Script = async () => undefined;
  before(async () => {
    server = http2.createServer();
    server.on("stream", (stream) => {
      stream.on("error", () => undefined);
      // Read the request to its end, then play the script.
      stream.resume();
      stream.on("end", () => void script(stream));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    assert.ok(address !== null && typeof address === "object");
    url = `http://127.0.0.1:${address.port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function read(): Promise<{ cursors: string[]; error?: unknown }> {
    const reader = createWatchReader(url);
    const cursors: string[] = [];
    try {
      for await (const response of reader.watchSessions({})) cursors.push(response.event?.cursor ?? "");
      return { cursors };
    } catch (error) {
      return { cursors, error };
    } finally {
      reader.close();
    }
  }

  it("reassembles messages cut at every byte and splits messages that share a frame", async () => {
    const first = envelope(event("1-0"));
    const rest = Buffer.concat([envelope(event("2-0")), envelope(event("3-0"))]);
    script = async (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      for (const byte of first) {
        stream.write(Buffer.of(byte));
        await turn();
      }
      stream.end(rest);
    };
    assert.deepEqual(await read(), { cursors: ["1-0", "2-0", "3-0"] });
  });

  it("a trailers-only response is the call's status", async () => {
    script = async (stream) => {
      stream.respond({ ...OK_HEADERS, "grpc-status": String(Code.NotFound), "grpc-message": "no%20such%20thing" }, { endStream: true });
    };
    const { cursors, error } = await read();
    assert.deepEqual(cursors, []);
    assert.ok(error instanceof ConnectError && error.code === Code.NotFound && error.rawMessage === "no such thing", String(error));
  });

  it("messages before an error status are delivered, then the error with the trailers as metadata", async () => {
    script = async (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": String(Code.ResourceExhausted), "grpc-message": "behind", "watch-cursor": "1-0" }));
      stream.end(envelope(event("1-0")));
    };
    const { cursors, error } = await read();
    assert.deepEqual(cursors, ["1-0"]);
    assert.ok(error instanceof ConnectError && error.code === Code.ResourceExhausted, String(error));
    assert.equal(error.metadata.get("watch-cursor"), "1-0");
  });

  it("a stream that ends without a status, or cut inside a message, is INTERNAL", async () => {
    script = async (stream) => {
      stream.respond(OK_HEADERS);
      stream.end(envelope(event("1-0")));
    };
    const missing = await read();
    assert.deepEqual(missing.cursors, ["1-0"]);
    assert.ok(missing.error instanceof ConnectError && missing.error.code === Code.Internal && /missing trailers/.test(missing.error.rawMessage), String(missing.error));

    script = async (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(envelope(event("1-0")).subarray(0, 8));
    };
    const cut = await read();
    assert.ok(cut.error instanceof ConnectError && cut.error.code === Code.Internal && /incomplete/.test(cut.error.rawMessage), String(cut.error));
  });

  it("a compressed message without negotiated compression is INTERNAL, and a non-gRPC answer is refused", async () => {
    script = async (stream) => {
      stream.respond(OK_HEADERS, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(envelope(event("1-0"), 1));
    };
    const compressed = await read();
    assert.ok(compressed.error instanceof ConnectError && compressed.error.code === Code.Internal && /compress/.test(compressed.error.rawMessage), String(compressed.error));

    script = async (stream) => {
      stream.respond({ ":status": 503, "content-type": "text/plain" });
      stream.end("busy");
    };
    const unavailable = await read();
    assert.ok(unavailable.error instanceof ConnectError && unavailable.error.code === Code.Unavailable, String(unavailable.error));
  });
});
