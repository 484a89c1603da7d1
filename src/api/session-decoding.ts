/**
 * The binary decoding of the busiest requests (CreateSessionRequest,
 * GetSessionRequest), read straight from the bytes into the message that
 * protobuf-es's fromBinary makes of them.
 *
 * fromBinary is generic: per field it dispatches through a map of compiled
 * readers, allocates a [number, wireType] pair per tag, and builds a
 * CreateSession's metadata as Struct and Value messages before converting
 * them into the JsonObject the field holds. This reads the usual shapes of
 * these two messages, and hands every other input to fromBinary (which also
 * makes the errors): an unknown field, a field with another wire type than
 * its own, a field given twice (protobuf merges repeated messages), a varint
 * longer than the values here need, a map entry that is not one key and one
 * value, the key "__proto__", nesting deeper than MAX_DEPTH, and any failure
 * while reading (truncated or invalid bytes). Compared with fromBinary over
 * generated and edge-case messages in test/session-decoding.test.ts.
 */
import { fromBinary, type DescMessage, type JsonObject, type JsonValue, type Message } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { CreateSessionRequestSchema, GetSessionRequestSchema, type CreateSessionRequest, type GetSessionRequest } from "../../gen/session/v1/session_pb.js";

/** Decodes one request message (fromBinary's result and errors). */
export type MessageDecoder = (bytes: Uint8Array) => Message;

/** The requests decoded here, by schema. */
export function sessionRequestDecoders(): ReadonlyMap<DescMessage, MessageDecoder> {
  return new Map<DescMessage, MessageDecoder>([
    [CreateSessionRequestSchema, (bytes) => decodeCreateSessionRequest(bytes) ?? fromBinary(CreateSessionRequestSchema, bytes)],
    [GetSessionRequestSchema, (bytes) => decodeGetSessionRequest(bytes) ?? fromBinary(GetSessionRequestSchema, bytes)],
  ]);
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;

/** Struct and list nesting read here; deeper metadata goes to fromBinary. */
const MAX_DEPTH = 32;

/** Thrown inside the reader for an input it leaves to fromBinary. */
class Unusual {}
const UNUSUAL = new Unusual();

const CREATE_TYPE = CreateSessionRequestSchema.typeName;
const GET_TYPE = GetSessionRequestSchema.typeName;
const DURATION_TYPE = "google.protobuf.Duration";

/** A CreateSessionRequest, or undefined for fromBinary to decode. */
export function decodeCreateSessionRequest(bytes: Uint8Array): CreateSessionRequest | undefined {
  const message: CreateSessionRequest = { $typeName: CREATE_TYPE, userId: "", dataSource: "", accessLevel: 0, requestId: "" };
  return decodeMessage(bytes, message, 6, readCreateField);
}

function readCreateField(reader: Reader, tag: number, message: CreateSessionRequest): boolean {
  switch (tag) {
    case (1 << 3) | LEN:
      message.userId = reader.string();
      return true;
    case (2 << 3) | LEN:
      message.dataSource = reader.string();
      return true;
    case (3 << 3) | VARINT:
      message.accessLevel = reader.int32();
      return true;
    case (4 << 3) | LEN:
      message.ttl = reader.duration();
      return true;
    case (5 << 3) | LEN:
      message.metadata = reader.struct(reader.length(), 1);
      return true;
    case (6 << 3) | LEN:
      message.requestId = reader.string();
      return true;
    default:
      return false;
  }
}

/** A GetSessionRequest, or undefined for fromBinary to decode. */
export function decodeGetSessionRequest(bytes: Uint8Array): GetSessionRequest | undefined {
  const message: GetSessionRequest = { $typeName: GET_TYPE, sessionId: "", includeEnded: false };
  return decodeMessage(bytes, message, 2, readGetField);
}

function readGetField(reader: Reader, tag: number, message: GetSessionRequest): boolean {
  switch (tag) {
    case (1 << 3) | LEN:
      message.sessionId = reader.string();
      return true;
    case (2 << 3) | VARINT:
      message.includeEnded = reader.bool();
      return true;
    default:
      return false;
  }
}

/**
 * Reads `bytes` into `message` (its zero value, as create() makes it) field
 * by field with `read`, which returns false for a tag it does not take.
 * Fields 1 to `lastField` each at most once.
 */
function decodeMessage<M>(bytes: Uint8Array, message: M, lastField: number, read: (reader: Reader, tag: number, message: M) => boolean): M | undefined {
  const reader = new Reader(bytes);
  try {
    let seen = 0;
    const end = bytes.length;
    while (reader.pos < end) {
      const tag = reader.varint();
      const field = tag >>> 3;
      if (field > lastField || (seen & (1 << field)) !== 0) return undefined;
      seen |= 1 << field;
      if (!read(reader, tag, message)) return undefined;
    }
    return reader.pos === end ? message : undefined;
  } catch {
    // Unusual, truncated or invalid (UTF-8): fromBinary decodes it or throws its own error.
    return undefined;
  }
}

/** Strings longer than this are decoded by TextDecoder at once (the same text). */
const SHORT_STRING = 64;

/** Strict UTF-8, a leading U+FEFF kept as text: protobuf-es's decoding of proto3 strings. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

class Reader {
  pos = 0;
  private view: DataView | undefined = undefined;

  constructor(private readonly bytes: Uint8Array) {}

  /** A varint below 2^31 (at most 5 bytes): tags, lengths, enum numbers, flags and nanos here; any other is unusual. */
  varint(): number {
    const bytes = this.bytes;
    let pos = this.pos;
    let byte = bytes[pos++]!;
    let value = byte & 0x7f;
    if (byte >= 0x80) {
      byte = bytes[pos++]!;
      value |= (byte & 0x7f) << 7;
      if (byte >= 0x80) {
        byte = bytes[pos++]!;
        value |= (byte & 0x7f) << 14;
        if (byte >= 0x80) {
          byte = bytes[pos++]!;
          value |= (byte & 0x7f) << 21;
          if (byte >= 0x80) {
            byte = bytes[pos++]!;
            if (byte >= 0x08) throw UNUSUAL;
            value |= byte << 28;
          }
        }
      }
    }
    // Past the end, a byte read is undefined: its bits are 0 and the position tells.
    if (pos > bytes.length) throw UNUSUAL;
    this.pos = pos;
    return value;
  }

  int32(): number {
    return this.varint();
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  /** The length of a length-delimited field, checked against the bytes left. */
  length(): number {
    const length = this.varint();
    if (this.pos + length > this.bytes.length) throw UNUSUAL;
    return length;
  }

  string(): string {
    const length = this.length();
    const bytes = this.bytes;
    const start = this.pos;
    const end = start + length;
    this.pos = end;
    if (length > SHORT_STRING) return utf8.decode(bytes.subarray(start, end));
    const codes = new Array<number>(length);
    for (let i = start; i < end; i++) {
      const byte = bytes[i]!;
      if (byte > 0x7f) return utf8.decode(bytes.subarray(start, end));
      codes[i - start] = byte;
    }
    return String.fromCharCode.apply(String, codes);
  }

  double(): number {
    if (this.pos + 8 > this.bytes.length) throw UNUSUAL;
    this.view ??= new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    const value = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return value;
  }

  /** A Duration of seconds and nanos in 0..2^31-1 (other values are unusual). */
  duration(): Duration {
    const end = this.length() + this.pos;
    const duration: Duration = { $typeName: DURATION_TYPE, seconds: 0n, nanos: 0 };
    let seconds = false;
    let nanos = false;
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === ((1 << 3) | VARINT) && !seconds) {
        seconds = true;
        duration.seconds = BigInt(this.varint());
      } else if (tag === ((2 << 3) | VARINT) && !nanos) {
        nanos = true;
        duration.nanos = this.int32();
      } else {
        throw UNUSUAL;
      }
    }
    if (this.pos !== end) throw UNUSUAL;
    return duration;
  }

  /** google.protobuf.Struct (map<string, Value> fields = 1) as its JsonObject, from the next `length` bytes. */
  struct(length: number, depth: number): JsonObject {
    if (depth > MAX_DEPTH) throw UNUSUAL;
    const end = this.pos + length;
    const object: JsonObject = {};
    while (this.pos < end) {
      if (this.varint() !== ((1 << 3) | LEN)) throw UNUSUAL;
      const entryEnd = this.length() + this.pos;
      // One key, then one value: the entries protobuf writers make.
      if (this.varint() !== ((1 << 3) | LEN)) throw UNUSUAL;
      const key = this.string();
      if (key === "__proto__") throw UNUSUAL;
      if (this.varint() !== ((2 << 3) | LEN)) throw UNUSUAL;
      object[key] = this.value(this.length(), depth);
      if (this.pos !== entryEnd) throw UNUSUAL;
    }
    if (this.pos !== end) throw UNUSUAL;
    return object;
  }

  /** google.protobuf.Value as its JsonValue: exactly one member of its oneof kind. */
  private value(length: number, depth: number): JsonValue {
    const end = this.pos + length;
    // A Value without a kind is null, as protobuf-es makes it.
    if (length === 0) return null;
    let value: JsonValue;
    switch (this.varint()) {
      case (1 << 3) | VARINT:
        this.varint();
        value = null;
        break;
      case (2 << 3) | I64:
        value = this.double();
        break;
      case (3 << 3) | LEN:
        value = this.string();
        break;
      case (4 << 3) | VARINT:
        value = this.bool();
        break;
      case (5 << 3) | LEN:
        value = this.struct(this.length(), depth + 1);
        break;
      case (6 << 3) | LEN:
        value = this.list(this.length(), depth + 1);
        break;
      default:
        throw UNUSUAL;
    }
    if (this.pos !== end) throw UNUSUAL;
    return value;
  }

  /** google.protobuf.ListValue (repeated Value values = 1) as its array. */
  private list(length: number, depth: number): JsonValue[] {
    if (depth > MAX_DEPTH) throw UNUSUAL;
    const end = this.pos + length;
    const values: JsonValue[] = [];
    while (this.pos < end) {
      if (this.varint() !== ((1 << 3) | LEN)) throw UNUSUAL;
      values.push(this.value(this.length(), depth));
    }
    if (this.pos !== end) throw UNUSUAL;
    return values;
  }
}
