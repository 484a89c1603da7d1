/**
 * WatchSessions' fast path: live events written to the call's HTTP/2 stream
 * as bytes serialized once per event, instead of passing through connect's
 * per-message pipeline.
 *
 * Why: one event reaches every watcher of a process at once. Through connect,
 * each of the N deliveries is serialized again and crosses about ten async
 * iteration steps (interceptors, serialize, envelope, compression check, join,
 * catch, write) with their promises; at 10k watchers that dominates the CPU of
 * every event. The bytes of an event are the same for every watcher, so they are
 * built once (WeakMap by message) and each delivery is one stream write.
 *
 * Rules that keep this correct next to connect's own writes:
 * - Only while the handler runs: connect pulls the next message only after it
 *   wrote the previous one, and the watch generator writes here only between
 *   its yields, so the two writers never interleave and order is kept.
 * - Only after connect sent the response headers (its first message does).
 * - Only when the stream takes data without buffering (no pending drain):
 *   otherwise the item is yielded, connect waits for the drain, and the
 *   watcher's bounded queue fills meanwhile (RESOURCE_EXHAUSTED as before).
 * - Only for the binary formats (gRPC, gRPC-Web, Connect streaming with
 *   +proto): their envelope is the same 5-byte prefix. Messages go
 *   uncompressed (flag 0), which every protocol allows whatever encoding was
 *   negotiated. JSON clients, and HTTP/1.1 calls, take connect's path.
 * Errors, trailers and the end of the stream stay connect's.
 */
import type { HandlerContext } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { WatchSessionsResponseSchema, type SessionEvent } from "../../gen/session/v1/session_pb.js";
import { COUNT_MESSAGE_SENT } from "../observability/metrics.js";
import { HTTP2_STREAM } from "../server/http2-stream.js";
import type { WatchItem, WatchSink } from "../streaming/watch-sessions.js";

/** Response content types whose messages are protobuf binary in a 5-byte envelope. */
const BINARY_STREAM_TYPES: ReadonlySet<string> = new Set(["application/grpc+proto", "application/grpc-web+proto", "application/connect+proto"]);

/** Enveloped WatchSessionsResponse bytes by event message; entries go with their messages. */
const ENVELOPES = new WeakMap<SessionEvent, Buffer>();

/** The enveloped bytes of `{ event }`: flag byte 0, big-endian length, the message. */
export function envelopeOf(event: SessionEvent): Buffer {
  let bytes = ENVELOPES.get(event);
  if (bytes === undefined) {
    const message = toBinary(WatchSessionsResponseSchema, create(WatchSessionsResponseSchema, { event }));
    bytes = Buffer.allocUnsafe(5 + message.byteLength);
    bytes.writeUInt8(0, 0);
    bytes.writeUInt32BE(message.byteLength, 1);
    bytes.set(message, 5);
    ENVELOPES.set(event, bytes);
  }
  return bytes;
}

/**
 * The sink for one WatchSessions call, or undefined when the call cannot take
 * the fast path (HTTP/1.1, JSON). `protoOf` gives the (shared) event message of an item.
 */
export function directWatchSink(context: HandlerContext, protoOf: (item: WatchItem) => SessionEvent): WatchSink | undefined {
  const stream = context.values.get(HTTP2_STREAM);
  if (stream === undefined) return undefined;
  if (!BINARY_STREAM_TYPES.has(context.responseHeader.get("content-type") ?? "")) return undefined;
  const countSent = context.values.get(COUNT_MESSAGE_SENT);
  /** Once sent, headers stay sent: the getter is not asked again on every delivery. */
  let headersSent = false;
  return {
    write(item: WatchItem): boolean {
      if (!headersSent) {
        if (!stream.headersSent) return false;
        headersSent = true;
      }
      if (stream.writableNeedDrain || !stream.writable || stream.destroyed) return false;
      stream.write(envelopeOf(protoOf(item)));
      countSent();
      return true;
    },
  };
}
