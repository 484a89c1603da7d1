/**
 * The binary encoding of the responses that carry one session (Get, Create,
 * Update, Extend, Close), written straight from the message into one reused buffer.
 *
 * protobuf-es's toBinary is generic: per call it allocates a fresh writer
 * buffer (grown by doubling), turns the metadata's JsonObject into Struct and
 * Value messages, splits every int64 through a DataView, and slices the
 * result. For the busiest responses of the service that cost as much as the
 * rest of the gRPC framing. This writes the same bytes (same field order,
 * same presence rules, map entries in key order, oneof members written even
 * at their zero value) and is checked byte for byte against toBinary in
 * test/session-encoding.test.ts. A message it does not know the shape of
 * (unknown fields, a value outside JSON) is left to toBinary.
 */
import { ScalarType, toBinary, type DescMessage, type JsonObject, type JsonValue, type Message } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  CloseSessionResponseSchema,
  CreateSessionResponseSchema,
  ExtendSessionResponseSchema,
  GetSessionResponseSchema,
  type Session,
  SessionSchema,
  UpdateSessionResponseSchema,
} from "../../gen/session/v1/session_pb.js";

/** Encodes one response message; the bytes are the caller's. */
export type MessageEncoder = (message: Message) => Uint8Array;

/** A response field this encoder writes: the session, or a flag beside it. */
interface PlannedField {
  readonly number: number;
  readonly localName: string;
  readonly kind: "session" | "bool";
}

/**
 * The session responses (`Session session = 1`, and flags such as
 * CreateSessionResponse's `created`), by schema, each with its encoder. The
 * shape is read from the descriptors: a response with any other field is
 * not in the map (toBinary writes it).
 */
export function sessionResponseEncoders(): ReadonlyMap<DescMessage, MessageEncoder> {
  const encoders = new Map<DescMessage, MessageEncoder>();
  for (const schema of [GetSessionResponseSchema, CreateSessionResponseSchema, UpdateSessionResponseSchema, ExtendSessionResponseSchema, CloseSessionResponseSchema]) {
    const plan = planOf(schema);
    if (plan !== undefined) encoders.set(schema, (message) => encodeSessionResponse(schema, plan, message));
  }
  return encoders;
}

function planOf(schema: DescMessage): readonly PlannedField[] | undefined {
  const plan: PlannedField[] = [];
  for (const field of [...schema.fields].sort((a, b) => a.number - b.number)) {
    if (field.oneof !== undefined) return undefined;
    if (field.fieldKind === "message" && field.message.typeName === SessionSchema.typeName) {
      plan.push({ number: field.number, localName: field.localName, kind: "session" });
    } else if (field.fieldKind === "scalar" && field.scalar === ScalarType.BOOL && field.presence === IMPLICIT_PRESENCE) {
      plan.push({ number: field.number, localName: field.localName, kind: "bool" });
    } else {
      return undefined;
    }
  }
  return plan;
}

/** google.protobuf.FeatureSet.FieldPresence.IMPLICIT: proto3's plain fields, written only when not zero. */
const IMPLICIT_PRESENCE = 2;

/** Wire types. */
const VARINT = 0;
const BIT64 = 1;
const LENGTH_DELIMITED = 2;

/** A value the fast writer does not handle: the message goes to toBinary. */
class NotPlain extends Error {}
const NOT_PLAIN = new NotPlain();

/**
 * A growable scratch buffer, reused across calls (one call encodes at a time:
 * encoding is synchronous). Nested messages reserve one byte for their length
 * and move their bytes when the length needs more.
 */
const INITIAL_BYTES = 4096;
const MAX_KEPT_BYTES = 256 * 1024;
let buf = Buffer.allocUnsafe(INITIAL_BYTES);
let pos = 0;

function ensure(bytes: number): void {
  if (pos + bytes <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + bytes) size *= 2;
  const grown = Buffer.allocUnsafe(size);
  buf.copy(grown, 0, 0, pos);
  buf = grown;
}

function varint32(value: number): void {
  // Non-negative values below 2^32 only (tags, lengths, enum numbers the service writes).
  ensure(5);
  while (value > 0x7f) {
    buf[pos++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[pos++] = value;
}

function tag(field: number, wireType: number): void {
  varint32((field << 3) | wireType);
}

const MAX_SAFE_BIGINT = BigInt(Number.MAX_SAFE_INTEGER);

/** A 64-bit varint of an integer given as a number (exact below 2^53) or a bigint; negatives as two's complement. */
function varint64(value: number | bigint): void {
  ensure(10);
  if (typeof value === "bigint") {
    // Timestamps' seconds and versions: within the safe range, number arithmetic spares a bigint per step.
    if (value >= 0n && value <= MAX_SAFE_BIGINT) value = Number(value);
  } else if (!Number.isInteger(value)) {
    throw NOT_PLAIN;
  }
  if (typeof value === "number" && value >= 0 && value <= Number.MAX_SAFE_INTEGER) {
    while (value > 0x7f) {
      buf[pos++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    buf[pos++] = value;
    return;
  }
  let big = BigInt.asUintN(64, BigInt(value));
  while (big > 0x7fn) {
    buf[pos++] = Number(big & 0x7fn) | 0x80;
    big >>= 7n;
  }
  buf[pos++] = Number(big);
}

/**
 * Called on the string rather than looked up on it: strings reach here in many representations (from Redis, JSON,
 * UUIDs, literals), so `value.charCodeAt` would be a megamorphic property load per character.
 */
const charCodeAt = String.prototype.charCodeAt;

/** Strings up to this long are tried as ASCII first. */
const ASCII_LOOP_MAX = 64;

/** Most strings are short: a one-byte length is reserved, and the bytes moved if the length needs more. */
function string(value: string): void {
  const length = value.length;
  ensure(length * 3 + 5);
  const start = pos;
  pos += 1;
  // ASCII, byte by byte: for the short strings of a session cheaper than Buffer#write; anything else is Buffer#write's.
  let i = 0;
  if (length <= ASCII_LOOP_MAX) {
    for (; i < length; i++) {
      const code = charCodeAt.call(value, i);
      if (code >= 0x80) break;
      buf[pos + i] = code;
    }
  }
  const written = i === length ? length : i + buf.write(value.slice(i), pos + i, "utf8");
  pos += written;
  finishLength(start, written);
}

/** Opens a length-delimited field's body: returns where its one reserved length byte is. */
function open(): number {
  ensure(1);
  return pos++;
}

/** Closes a length-delimited body opened at `start`: writes its length, moving the body if it needs more than one byte. */
function close(start: number): void {
  finishLength(start, pos - start - 1);
}

function finishLength(start: number, length: number): void {
  if (length < 0x80) {
    buf[start] = length;
    return;
  }
  let extra = 0;
  for (let rest = length >>> 7; rest > 0; rest >>>= 7) extra++;
  ensure(extra);
  buf.copy(buf, start + 1 + extra, start + 1, pos);
  pos += extra;
  let at = start;
  let value = length;
  while (value > 0x7f) {
    buf[at++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[at] = value;
}

function encodeSessionResponse(schema: DescMessage, plan: readonly PlannedField[], message: Message): Uint8Array {
  if (message.$typeName !== schema.typeName || hasUnknown(message)) return toBinary(schema, message);
  const fields = message as unknown as Readonly<Record<string, unknown>>;
  pos = 0;
  try {
    for (const field of plan) {
      const value = fields[field.localName];
      if (field.kind === "bool") {
        if (value === true) {
          tag(field.number, VARINT);
          varint32(1);
        } else if (value !== false) {
          throw NOT_PLAIN;
        }
        continue;
      }
      if (value === undefined) continue;
      const session = value as Session;
      if (session.$typeName !== SessionSchema.typeName || hasUnknown(session)) throw NOT_PLAIN;
      tag(field.number, LENGTH_DELIMITED);
      const at = open();
      writeSession(session);
      close(at);
    }
  } catch (error) {
    if (error === NOT_PLAIN) return toBinary(schema, message);
    throw error;
  }
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  // A rare large response does not keep its buffer for the life of the process.
  if (buf.length > MAX_KEPT_BYTES) buf = Buffer.allocUnsafe(INITIAL_BYTES);
  return out;
}

function hasUnknown(message: Message): boolean {
  return message.$unknown !== undefined && message.$unknown.length > 0;
}

function writeSession(session: Session): void {
  stringField(1, session.sessionId);
  stringField(2, session.userId);
  stringField(3, session.dataSource);
  enumField(4, session.accessLevel);
  enumField(5, session.status);
  timestampField(6, session.createTime);
  timestampField(7, session.expireTime);
  timestampField(8, session.lastAccessTime);
  timestampField(9, session.endTime);
  if (session.metadata !== undefined) {
    tag(10, LENGTH_DELIMITED);
    const at = open();
    writeStruct(session.metadata);
    close(at);
  }
  if (session.version !== 0n) {
    tag(11, VARINT);
    varint64(session.version);
  }
}

function stringField(field: number, value: string): void {
  if (value === "") return;
  tag(field, LENGTH_DELIMITED);
  string(value);
}

function enumField(field: number, value: number): void {
  if (value === 0) return;
  // A negative enum number would be a 10-byte varint: not one the service has.
  if (value < 0 || !Number.isInteger(value)) throw NOT_PLAIN;
  tag(field, VARINT);
  varint32(value);
}

function timestampField(field: number, value: Timestamp | undefined): void {
  if (value === undefined) return;
  if (hasUnknown(value)) throw NOT_PLAIN;
  tag(field, LENGTH_DELIMITED);
  const at = open();
  if (value.seconds !== 0n) {
    tag(1, VARINT);
    varint64(value.seconds);
  }
  if (value.nanos !== 0) {
    tag(2, VARINT);
    varint64(value.nanos);
  }
  close(at);
}

/** google.protobuf.Struct: `map<string, Value> fields = 1`, an entry per key in key order. */
function writeStruct(object: JsonObject): void {
  for (const key of Object.keys(object)) {
    tag(1, LENGTH_DELIMITED);
    const entry = open();
    tag(1, LENGTH_DELIMITED);
    string(key);
    tag(2, LENGTH_DELIMITED);
    const value = open();
    writeValue(object[key] as JsonValue);
    close(value);
    close(entry);
  }
}

/** google.protobuf.Value: the oneof member of the JSON value's kind, written even when zero. */
function writeValue(value: JsonValue): void {
  switch (typeof value) {
    case "number":
      tag(2, BIT64);
      ensure(8);
      pos = buf.writeDoubleLE(value, pos);
      return;
    case "string":
      tag(3, LENGTH_DELIMITED);
      string(value);
      return;
    case "boolean":
      tag(4, VARINT);
      varint32(value ? 1 : 0);
      return;
    case "object": {
      if (value === null) {
        tag(1, VARINT);
        varint32(0);
        return;
      }
      if (Array.isArray(value)) {
        tag(6, LENGTH_DELIMITED);
        const list = open();
        for (const item of value) {
          tag(1, LENGTH_DELIMITED);
          const at = open();
          writeValue(item);
          close(at);
        }
        close(list);
        return;
      }
      tag(5, LENGTH_DELIMITED);
      const struct = open();
      writeStruct(value);
      close(struct);
      return;
    }
    default:
      throw NOT_PLAIN;
  }
}
