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
 * before the adapter reads router.handlers.
 */
import { gunzipSync, brotliDecompressSync } from "node:zlib";
import { fromBinary, fromJsonString, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import { badRequestDetail } from "../api/bad-request.js";

export interface BodyGuardOptions {
  readonly readMaxBytes: number;
  /** A body was refused; `method` is "package.Service/Method", `request` the universal request (context values hold the peer). */
  readonly onMalformed: (method: string, request: UniversalServerRequest) => void;
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
    const checked = checkedBody(body as AsyncIterable<Uint8Array>, format, schema, options.readMaxBytes, () => options.onMalformed(method, req));
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
  onMalformed: () => void,
): AsyncGenerator<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const iterator = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await iterator.next();
    if (next.done === true) break;
    chunks.push(next.value);
    length += next.value.byteLength;
    if (length > readMaxBytes + ENVELOPE_HEADER) {
      // Too large for one message: connect refuses it with RESOURCE_EXHAUSTED; pass it on unread.
      yield* chunks;
      for (;;) {
        const rest = await iterator.next();
        if (rest.done === true) return;
        yield rest.value;
      }
    }
  }
  const bytes = chunks.length === 1 ? (chunks[0] as Uint8Array) : Buffer.concat(chunks, length);
  const problem = firstProblem(bytes, format, schema, readMaxBytes);
  if (problem !== undefined) {
    onMalformed();
    throw problem;
  }
  yield bytes;
}

/** What is wrong with the request's message(s), or undefined when they decode (or are left to connect). */
function firstProblem(bytes: Uint8Array, format: Format, schema: DescMessage, readMaxBytes: number): ConnectError | undefined {
  if (!format.enveloped) {
    const message = decompress(bytes, format.encoding, readMaxBytes);
    return message === undefined ? undefined : decodeProblem(message, format.json, schema);
  }
  let offset = 0;
  while (offset + ENVELOPE_HEADER <= bytes.byteLength) {
    const flags = bytes[offset] as number;
    const size = new DataView(bytes.buffer, bytes.byteOffset + offset + 1, 4).getUint32(0);
    const start = offset + ENVELOPE_HEADER;
    // A cut envelope or one over the limit: connect has its own clear error for those.
    if (start + size > bytes.byteLength || size > readMaxBytes) return undefined;
    const data = bytes.subarray(start, start + size);
    const message = (flags & FLAG_COMPRESSED) === 0 ? data : decompress(data, format.encoding, readMaxBytes);
    if (message !== undefined) {
      const problem = decodeProblem(message, format.json, schema);
      if (problem !== undefined) return problem;
    }
    offset = start + size;
  }
  return undefined;
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

/** The JSON name of a top-level field of `schema` that the decoder's text names, if any. */
function knownField(schema: DescMessage, parserText: string): string | undefined {
  const named = /field ([A-Za-z0-9_.]+) from JSON/.exec(parserText)?.[1];
  if (named === undefined) return undefined;
  const prefix = `${schema.typeName}.`;
  if (!named.startsWith(prefix)) return undefined;
  const name = named.slice(prefix.length);
  const field = schema.fields.find((f) => f.name === name || f.jsonName === name || f.localName === name);
  return field?.jsonName;
}
