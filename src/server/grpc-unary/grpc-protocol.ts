/**
 * The gRPC-over-HTTP/2 rules the fast unary path needs beyond framing, written
 * against connect's public API only: the grpc-timeout grammar, compression
 * negotiation (doc/compression.md in grpc/grpc, as connect negotiates it),
 * and the trailers of an error (grpc-status, grpc-message, the
 * grpc-status-details-bin google.rpc.Status, the error's metadata). Unlike
 * connect, no message here repeats a header value the caller sent.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { encodeGrpcMessage } from "./grpc-message.js";

/** A message codec as connect-node's compressionGzip and compressionBrotli are. */
export interface Compression {
  readonly name: string;
  compress(bytes: Uint8Array): Promise<Uint8Array>;
  decompress(bytes: Uint8Array, readMaxBytes: number): Promise<Uint8Array>;
}

const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** No grpc-timeout header: one answer shared by every such call. */
const NO_TIMEOUT: { readonly timeoutMs?: number } = Object.freeze({});

/** grpc-timeout: up to 8 digits and a unit (H, M, S, m, u, n). */
export function parseGrpcTimeout(value: string | null): { readonly timeoutMs?: number; readonly error?: ConnectError } {
  if (value === null) return NO_TIMEOUT;
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (match === null) return { error: new ConnectError("protocol error: invalid grpc-timeout header", Code.InvalidArgument) };
  return { timeoutMs: Number(match[1]) * (TIMEOUT_UNIT_MS[match[2] as string] as number) };
}

export interface Negotiated {
  /** How the request message is compressed (grpc-encoding), if at all. */
  readonly request: Compression | null;
  /** How to compress the response: the first of the caller's grpc-accept-encoding we have, else as the request. */
  readonly response: Compression | null;
  /** UNIMPLEMENTED, with grpc-accept-encoding, for a request encoding we lack. */
  readonly error?: ConnectError;
}

/** Neither header (or identity): nothing compressed either way, one answer shared by every such call. */
const UNCOMPRESSED: Negotiated = Object.freeze({ request: null, response: null });

export function negotiateCompression(available: readonly Compression[], encoding: string | null, acceptEncoding: string | null): Negotiated {
  if ((encoding === null || encoding === "identity") && (acceptEncoding === null || acceptEncoding === "")) return UNCOMPRESSED;
  let request: Compression | null = null;
  let error: ConnectError | undefined;
  if (encoding !== null && encoding !== "identity") {
    request = available.find((c) => c.name === encoding) ?? null;
    if (request === null) {
      const names = available.map((c) => c.name).join(",");
      error = new ConnectError(`unsupported grpc-encoding: supported encodings are ${names}`, Code.Unimplemented, { "grpc-accept-encoding": names });
    }
  }
  let response = request;
  if (acceptEncoding !== null && acceptEncoding !== "") {
    response = null;
    for (const name of acceptEncoding.split(",")) {
      const found = available.find((c) => c.name === name.trim());
      if (found !== undefined) {
        response = found;
        break;
      }
    }
  }
  return error === undefined ? { request, response } : { request, response, error };
}

/**
 * Writes an error's status into `target`: its metadata first, then
 * grpc-status, grpc-message (the spec's percent-encoding) and, when the error
 * has details, grpc-status-details-bin (google.rpc.Status, base64).
 */
export function setErrorTrailers(target: Headers, error: ConnectError): void {
  error.metadata.forEach((value, key) => target.append(key, value));
  target.set("grpc-status", String(error.code));
  target.set("grpc-message", encodeGrpcMessage(error.rawMessage));
  if (error.details.length > 0) target.set("grpc-status-details-bin", Buffer.from(encodeStatus(error)).toString("base64"));
}

/** google.rpc.Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; } */
function encodeStatus(error: ConnectError): Uint8Array {
  const writer = new BinaryWriter();
  writer.tag(1, WireType.Varint).int32(error.code);
  writer.tag(2, WireType.LengthDelimited).string(error.rawMessage);
  for (const detail of error.details) {
    const [typeName, value] = "desc" in detail ? [detail.desc.typeName, toBinary(detail.desc, create(detail.desc, detail.value))] : [detail.type, detail.value];
    // google.protobuf.Any { string type_url = 1; bytes value = 2; }
    writer.tag(3, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(`type.googleapis.com/${typeName}`);
    writer.tag(2, WireType.LengthDelimited).bytes(value);
    writer.join();
  }
  return writer.finish();
}
