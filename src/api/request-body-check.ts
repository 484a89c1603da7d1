/**
 * Bad bytes get INVALID_ARGUMENT with a message of ours. Connect parses a
 * request message before any interceptor runs and reports a failure as
 * INTERNAL with the parser's text ("parse binary: illegal tag: field no ..."),
 * or for JSON with text that can quote the body. So each routed handler's
 * request body is read here first (bounded by MAX_REQUEST_BYTES), its
 * message decoded once with protobuf-es, and a body that does not decode
 * ends the call with our INVALID_ARGUMENT, raised from the body stream
 * itself so connect encodes it in the request's protocol. A body that
 * decodes is handed on unchanged (connect decodes it again: a small request
 * costs microseconds twice; a large one is bounded by MAX_REQUEST_BYTES).
 *
 * Messages name the request type, and the field when the JSON decoder names
 * one that the schema has; never parser text, stack text or request bytes.
 *
 * Hook: call guardRequestBodies(router, ...) after the routes are registered,
 * before the adapter reads router.handlers (app.ts does, in its routes).
 */
import { gunzipSync, brotliDecompressSync } from "node:zlib";
import { fromBinary, fromJsonString, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { badRequestDetail } from "./bad-request.js";

/** A routed handler of connect's router, and its request (typed through the public ConnectRouter). */
type UniversalHandler = ConnectRouter["handlers"][number];
type UniversalServerRequest = Parameters<UniversalHandler>[0];

export interface BodyGuardOptions {
  readonly readMaxBytes: number;
  /**
   * A body was refused: malformed (INVALID_ARGUMENT, ours) or larger than readMaxBytes (connect answers
   * RESOURCE_EXHAUSTED); `method` is "package.Service/Method", `request` the universal request (context values hold the peer).
   */
  readonly onMalformed: (method: string, request: UniversalServerRequest, reason: "malformed_body" | "too_large") => void;
}

/** The recursion bound protobuf-es applies by default, and this message's wording of it. */
const MAX_DEPTH = 100;
/** Envelope: 1 flag byte and a 4-byte big-endian length (gRPC, gRPC-Web, Connect streaming). */
const ENVELOPE_HEADER = 5;
const FLAG_COMPRESSED = 0x01;

export function guardRequestBodies(router: ConnectRouter, options: BodyGuardOptions): void {
  const handlers = router.handlers;
  for (let i = 0; i < handlers.length; i++) {
    const handler = handlers[i] as UniversalHandler;
    handlers[i] = Object.assign(guarded(handler, options), handler);
  }
}

function guarded(handler: UniversalHandler, options: BodyGuardOptions): (req: UniversalServerRequest) => ReturnType<UniversalHandler> {
  const schema = handler.method.input;
  const method = `${handler.service.typeName}/${handler.method.name}`;
  return (req) => {
    const body = req.body;
    if (req.method !== "POST" || typeof body !== "object" || body === null || !(Symbol.asyncIterator in body)) return handler(req);
    const format = formatOf(req.header);
    if (format === undefined) return handler(req);
    // connect refuses an unenveloped body from its Content-Length alone, before a byte of it is read: counted here.
    if (!format.enveloped && Number(req.header.get("content-length")) > options.readMaxBytes) {
      options.onMalformed(method, req, "too_large");
      return handler(req);
    }
    const checked = checkedBody(body as AsyncIterable<Uint8Array>, format, schema, options.readMaxBytes, (reason) => options.onMalformed(method, req, reason));
    return handler({ ...req, body: checked });
  };
}

interface Format {
  readonly enveloped: boolean;
  readonly json: boolean;
  /** Compression of the body (unary) or of flagged envelopes; undefined: identity. */
  readonly encoding: string | undefined;
}

function formatOf(header: Headers): Format | undefined {
  const contentType = (header.get("content-type") ?? "").toLowerCase();
  let enveloped: boolean;
  if (/^application\/(grpc|grpc-web|connect)\+?/.test(contentType)) enveloped = true;
  else if (/^application\/(json|proto)\b/.test(contentType)) enveloped = false;
  else return undefined;
  // gRPC-Web text mode is base64: left to connect.
  if (contentType.includes("grpc-web-text")) return undefined;
  const json = contentType.includes("json");
  const encoding = enveloped ? (header.get("grpc-encoding") ?? header.get("connect-content-encoding")) : header.get("content-encoding");
  const normalized = encoding === null || encoding === "" || encoding === "identity" ? undefined : encoding.toLowerCase();
  return { enveloped, json, encoding: normalized };
}

async function* checkedBody(
  body: AsyncIterable<Uint8Array>,
  format: Format,
  schema: DescMessage,
  readMaxBytes: number,
  onRefused: (reason: "malformed_body" | "too_large") => void,
): AsyncGenerator<Uint8Array> {
  const check = (message: Uint8Array, compressed: boolean): void => {
    // A compressed envelope without a negotiated encoding: connect has its own error for that.
    if (compressed && format.encoding === undefined) return;
    const plain = compressed || !format.enveloped ? decompress(message, format.encoding, readMaxBytes) : message;
    const problem = plain === undefined ? undefined : decodeProblem(plain, format.json, schema);
    if (problem !== undefined) {
      onRefused("malformed_body");
      throw problem;
    }
  };
  const iterator = body[Symbol.asyncIterator]();
  /** Too large: counted, and the rest handed on unread (connect answers it). */
  async function* tooLarge(pending: Uint8Array): AsyncGenerator<Uint8Array> {
    onRefused("too_large");
    if (pending.byteLength > 0) yield pending;
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) return;
      yield next.value;
    }
  }
  let buffer: Uint8Array = new Uint8Array(0);
  for (;;) {
    const next = await iterator.next();
    if (next.done !== true) buffer = buffer.byteLength === 0 ? next.value : Buffer.concat([buffer, next.value]);
    if (!format.enveloped) {
      if (buffer.byteLength > readMaxBytes) return yield* tooLarge(buffer);
      if (next.done !== true) continue;
      check(buffer, false);
      if (buffer.byteLength > 0) yield buffer;
      return;
    }
    // Enveloped: each complete message is checked and passed on as it arrives (a stream may send several).
    while (buffer.byteLength >= ENVELOPE_HEADER) {
      const size = new DataView(buffer.buffer, buffer.byteOffset + 1, 4).getUint32(0);
      if (size > readMaxBytes) return yield* tooLarge(buffer);
      if (buffer.byteLength < ENVELOPE_HEADER + size) break;
      const flags = buffer[0] as number;
      check(buffer.subarray(ENVELOPE_HEADER, ENVELOPE_HEADER + size), (flags & FLAG_COMPRESSED) !== 0);
      yield buffer.subarray(0, ENVELOPE_HEADER + size);
      buffer = buffer.subarray(ENVELOPE_HEADER + size);
    }
    if (next.done === true) {
      // A cut envelope: connect has its own clear error for it.
      if (buffer.byteLength > 0) yield buffer;
      return;
    }
  }
}

/** The decompressed bytes, or undefined when connect should judge them (unknown encoding, corrupt or too large data). */
function decompress(data: Uint8Array, encoding: string | undefined, readMaxBytes: number): Uint8Array | undefined {
  try {
    if (encoding === undefined) return data;
    if (encoding === "gzip") return gunzipSync(data, { maxOutputLength: readMaxBytes });
    if (encoding === "br") return brotliDecompressSync(data, { maxOutputLength: readMaxBytes });
  } catch {
    return undefined;
  }
  return undefined;
}

function decodeProblem(message: Uint8Array, json: boolean, schema: DescMessage): ConnectError | undefined {
  try {
    if (json) fromJsonString(schema, new TextDecoder("utf-8", { fatal: true }).decode(message));
    else fromBinary(schema, message);
    return undefined;
  } catch (error) {
    return invalid(schema, json, error instanceof Error ? error.message : "");
  }
}

/** Our INVALID_ARGUMENT for a binary request message protobuf-es could not decode (the fast gRPC unary path's too). */
export function invalidProtobuf(schema: DescMessage, parserError: unknown): ConnectError {
  return invalid(schema, false, parserError instanceof Error ? parserError.message : "");
}

/**
 * Our message for a decode failure. The parser's own text is read only to
 * pick one of our sentences and a field name the schema has; it is never sent.
 */
function invalid(schema: DescMessage, json: boolean, parserText: string): ConnectError {
  const type = schema.typeName;
  if (/recursion depth/i.test(parserText)) {
    return new ConnectError(`request: ${type} nests messages deeper than ${MAX_DEPTH} levels`, Code.InvalidArgument);
  }
  if (!json && /utf-?8|encoded data was not valid/i.test(parserText)) {
    return new ConnectError(`request: a string field of ${type} is not valid UTF-8`, Code.InvalidArgument);
  }
  if (!json) return new ConnectError(`request: the body is not a valid protobuf encoding of ${type}`, Code.InvalidArgument);
  const field = knownField(schema, parserText);
  if (field !== undefined) {
    const text = `${field}: invalid value for this field`;
    return new ConnectError(text, Code.InvalidArgument, undefined, [badRequestDetail(field, text)]);
  }
  return new ConnectError(`request: the body is not valid JSON for ${type}`, Code.InvalidArgument);
}

/**
 * The JSON name of the top-level field of `schema` the decoder's text points
 * at: one it names ("field session.v1.X.ttl"), or the only field of the
 * message or enum type it names ("message google.protobuf.Duration").
 */
function knownField(schema: DescMessage, parserText: string): string | undefined {
  const named = /field ([A-Za-z0-9_.]+) from JSON/.exec(parserText)?.[1];
  if (named !== undefined) {
    const prefix = `${schema.typeName}.`;
    if (!named.startsWith(prefix)) return undefined;
    const name = named.slice(prefix.length);
    return schema.fields.find((f) => f.name === name || f.jsonName === name)?.jsonName;
  }
  const type = /^cannot decode (?:message|enum) ([A-Za-z0-9_.]+) from JSON/.exec(parserText)?.[1];
  if (type === undefined) return undefined;
  const ofType = schema.fields.filter((f) => (f.message ?? f.enum)?.typeName === type);
  return ofType.length === 1 ? ofType[0]?.jsonName : undefined;
}
