/**
 * The hand-written request decoders (src/api/session-decoding.ts) make
 * exactly the message protobuf-es's fromBinary makes (same fields, same key
 * order, same types: bigint seconds, -0, NaN), or throw what it throws, for
 * generated CreateSessionRequest and GetSessionRequest messages of every
 * metadata shape and for the inputs they leave to fromBinary: unknown and
 * repeated fields, other wire types, long varints, odd map entries,
 * "__proto__" keys, deep nesting, truncated and invalid bytes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { CreateSessionRequestSchema, GetSessionRequestSchema } from "../gen/session/v1/session_pb.js";
import { decodeCreateSessionRequest, decodeGetSessionRequest, sessionRequestDecoders } from "../src/api/session-decoding.js";
import { jsonGenerator, random } from "./support/json-values.js";

const decoders = sessionRequestDecoders();

const PIECES = ["", "a", "web", "203.0.113.7", "grüße", "日本語", "✓", "😀", "\u0000", "\ufeff", "x".repeat(70), "é".repeat(40), "%,:"];
/** No "__proto__": a message with it is fromBinary's (tested below), and these must be read by hand. */
const KEYS = ["app", "ip", "", "1", "10", "4294967295", "constructor", "toString", "ключ", "k".repeat(130)];
const NUMBERS = [0, -0, 1, -1, 100, 0.5, -123.456, 2 ** 53, 1e308, -1e-308, 2 ** 31, Number.NaN, Infinity, -Infinity, 5e-324];
const { text, jsonObject } = jsonGenerator({ pieces: PIECES, keys: KEYS, numbers: NUMBERS });

function createRequest(next: () => number): Uint8Array {
  const message = create(CreateSessionRequestSchema, {
    userId: text(next),
    dataSource: text(next),
    accessLevel: Math.floor(next() * 4),
    requestId: next() < 0.5 ? "" : text(next),
  });
  if (next() < 0.8) message.ttl = create(DurationSchema, { seconds: BigInt(Math.floor(next() * 100_000)), nanos: next() < 0.8 ? 0 : Math.floor(next() * 999_999_999) });
  if (next() < 0.8) message.metadata = jsonObject(next, 0);
  return toBinary(CreateSessionRequestSchema, message);
}

function getRequest(next: () => number): Uint8Array {
  return toBinary(GetSessionRequestSchema, create(GetSessionRequestSchema, { sessionId: text(next), includeEnded: next() < 0.5 }));
}

/** Everything the message is made of, in order: key order, prototypes, types, -0 and NaN. */
function shape(value: unknown): string {
  switch (typeof value) {
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "bigint":
      return `${value}n`;
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return `[${value.map(shape).join(",")}]`;
      const proto = Object.getPrototypeOf(value) === Object.prototype ? "" : "<proto>";
      const fields = Object.keys(value).map((key) => {
        const descriptor = Object.getOwnPropertyDescriptor(value, key);
        const plain = descriptor?.writable === true && descriptor.enumerable === true && descriptor.configurable === true ? "" : "<odd>";
        return `${JSON.stringify(key)}${plain}:${shape((value as Record<string, unknown>)[key])}`;
      });
      return `${proto}{${fields.join(",")}}`;
    }
    default:
      return `${typeof value}:${String(value)}`;
  }
}

function outcome(decode: () => unknown): string {
  try {
    return shape(decode());
  } catch (error) {
    return `throws ${error instanceof Error ? `${error.constructor.name}: ${error.message}` : String(error)}`;
  }
}

function assertSame(schema: DescMessage, bytes: Uint8Array): void {
  const decode = decoders.get(schema);
  assert.ok(decode !== undefined);
  assert.equal(outcome(() => decode(bytes)), outcome(() => fromBinary(schema, bytes)), `bytes: ${Buffer.from(bytes).toString("hex")}`);
}

/** A field's tag and a varint as bytes. */
function varint(value: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v === 0n ? byte : byte | 0x80);
  } while (v !== 0n);
  return out;
}

function len(field: number, body: readonly number[]): number[] {
  return [...varint((field << 3) | 2), ...varint(body.length), ...body];
}

const ascii = (s: string): number[] => [...Buffer.from(s, "utf8")];
/** A Struct map entry: key, then a Value with the given body. */
const entry = (key: number[], value: number[]): number[] => len(1, [...len(1, key), ...len(2, value)]);

test("generated CreateSessionRequest and GetSessionRequest: the hand decoder reads them, as fromBinary does", () => {
  const next = random(10);
  for (let i = 0; i < 4000; i++) {
    const create = createRequest(next);
    assert.notEqual(decodeCreateSessionRequest(create), undefined, `not read by hand: ${Buffer.from(create).toString("hex")}`);
    assertSame(CreateSessionRequestSchema, create);
    const get = getRequest(next);
    assert.notEqual(decodeGetSessionRequest(get), undefined);
    assertSame(GetSessionRequestSchema, get);
  }
});

test("the messages a caller may send on purpose or by mistake decode as fromBinary decodes them", () => {
  const valid = [...len(1, ascii("u")), ...len(2, ascii("d")), 0x18, 0x01, ...len(4, [0x08, 0x10]), ...len(5, entry(ascii("a"), [0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f])), ...len(6, ascii("r"))];
  const cases: number[][] = [
    [],
    valid,
    // Fields in another order (keys land in the order they came), and repeated: strings last wins, messages merge.
    [...len(6, ascii("r")), ...len(5, entry(ascii("z"), [0x20, 0x01])), ...len(4, [0x08, 0x05]), ...len(1, ascii("u"))],
    [...valid, ...len(1, ascii("again"))],
    [...valid, ...len(4, [0x10, 0x07])],
    [...valid, ...len(5, entry(ascii("b"), [0x20, 0x00]))],
    [...valid, 0x18, 0x02],
    // Unknown fields, of every wire type.
    [...valid, 0x38, 0x01],
    [...valid, ...len(7, ascii("x"))],
    [...valid, 0x79, 1, 2, 3, 4, 5, 6, 7, 8],
    [...valid, 0x7d, 1, 2, 3, 4],
    [...len(1, ascii("u")), 0x0b, 0x0c],
    [0x00],
    // Known fields with another wire type.
    [0x08, 0x01],
    [0x1a, 0x01, 0x01],
    [0x21, 1, 2, 3, 4, 5, 6, 7, 8],
    // Enum numbers: unknown, negative, large; seconds and nanos beyond 2^31, negative.
    [0x18, 0x7f],
    [0x18, ...varint(-1)],
    [0x18, ...varint(2 ** 31 - 1)],
    [0x18, ...varint(2 ** 31)],
    [...len(4, [0x08, ...varint(2 ** 31 - 1)])],
    [...len(4, [0x08, ...varint(2 ** 40)])],
    [...len(4, [0x08, ...varint(-5), 0x10, ...varint(-7)])],
    [...len(4, [0x10, ...varint(999_999_999)])],
    [...len(4, [0x08, 0x01, 0x08, 0x02])],
    [...len(4, [0x18, 0x01])],
    [...len(4, [])],
    // Non-minimal varints.
    [0x18, 0x81, 0x00],
    [0x0a, 0x81, 0x00, 0x41],
    // Metadata: empty, empty values, every kind, nested, lists, odd entries.
    [...len(5, [])],
    [...len(5, entry(ascii("a"), []))],
    [...len(5, len(1, []))],
    [...len(5, len(1, len(1, ascii("k"))))],
    [...len(5, len(1, len(2, [0x20, 0x01])))],
    [...len(5, len(1, [...len(2, [0x20, 0x01]), ...len(1, ascii("k"))]))],
    [...len(5, len(1, [...len(1, ascii("k")), ...len(1, ascii("j")), ...len(2, [0x20, 0x01])]))],
    [...len(5, len(1, [...len(1, ascii("k")), ...len(2, [0x20, 0x01]), ...len(2, [0x18 - 0x08 + 0x00, 0x00])]))],
    [...len(5, len(1, [...len(1, ascii("k")), ...len(2, [0x20, 0x01]), 0x18, 0x01]))],
    [...len(5, entry(ascii("n"), [0x08, 0x00]))],
    [...len(5, entry(ascii("n"), [0x08, 0x05]))],
    [...len(5, entry(ascii("n"), [0x08, ...varint(-1)]))],
    [...len(5, entry(ascii("b"), [0x20, 0x02]))],
    [...len(5, entry(ascii("b"), [0x20, ...varint(2 ** 40)]))],
    [...len(5, entry(ascii("s"), len(3, ascii("v"))))],
    [...len(5, entry(ascii("two"), [0x20, 0x01, ...len(3, ascii("v"))]))],
    [...len(5, entry(ascii("twice"), [...len(5, entry(ascii("a"), [0x20, 0x01])), ...len(5, entry(ascii("b"), [0x20, 0x00]))]))],
    [...len(5, entry(ascii("o"), len(5, [])))],
    [...len(5, entry(ascii("l"), len(6, [])))],
    [...len(5, entry(ascii("l"), len(6, [...len(1, [0x20, 0x01]), ...len(1, []), ...len(1, len(6, len(1, [0x08, 0x00])))])))],
    [...len(5, entry(ascii("l"), len(6, [0x08, 0x01])))],
    [...len(5, entry(ascii("x"), [0x38, 0x01]))],
    [...len(5, [...entry(ascii("dup"), [0x20, 0x01]), ...entry(ascii("other"), [0x20, 0x00]), ...entry(ascii("dup"), len(3, ascii("v")))])],
    [...len(5, [...entry(ascii("b"), [0x20, 0x01]), ...entry(ascii("10"), [0x20, 0x00]), ...entry(ascii("a"), [0x20, 0x01]), ...entry(ascii("2"), [0x20, 0x01])])],
    [...len(5, entry(ascii("__proto__"), [0x20, 0x01]))],
    [...len(5, entry(ascii("__proto__"), len(5, entry(ascii("__proto__"), [0x20, 0x01]))))],
    [...len(5, entry(ascii("constructor"), [0x20, 0x01]))],
    [...len(5, [0x10, 0x01])],
    // Strings: invalid UTF-8, a byte-order mark, NUL, long ones.
    [...len(1, [0xff])],
    [...len(1, [0xc3])],
    [...len(1, [0xed, 0xa0, 0x80])],
    [...len(1, [0xef, 0xbb, 0xbf, 0x41])],
    [...len(1, [0x00])],
    [...len(1, ascii("x".repeat(64)))],
    [...len(1, ascii("x".repeat(65)))],
    [...len(1, ascii(`${"x".repeat(100)}é`))],
    [...len(5, entry([0xff], [0x20, 0x01]))],
    [...len(5, entry(ascii("k"), len(3, [0xfe])))],
  ];
  // Deep nesting, to and beyond where the hand decoder stops and where fromBinary does.
  for (const depth of [1, 31, 32, 33, 48, 49, 50, 51, 60]) {
    let value = [0x20, 0x01];
    for (let i = 0; i < depth; i++) value = len(5, entry(ascii("d"), value));
    cases.push([...len(5, entry(ascii("top"), value))]);
    let list = [0x20, 0x01];
    for (let i = 0; i < depth; i++) list = len(6, len(1, list));
    cases.push([...len(5, entry(ascii("top"), list))]);
  }
  // Every prefix of a full message: truncated at each byte.
  for (let end = 1; end < valid.length; end++) cases.push(valid.slice(0, end));
  // Lengths that run past the end.
  cases.push([0x0a, 0x05, 0x41], [0x2a, 0x7f], [...len(5, [0x0a, 0x10, 0x0a])], [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
  for (const bytes of cases) assertSame(CreateSessionRequestSchema, new Uint8Array(bytes));

  const gets: number[][] = [
    [],
    [...len(1, ascii("0f8fad5b-d9cb-469f-a165-70867728950e")), 0x10, 0x01],
    [0x10, 0x01, ...len(1, ascii("a"))],
    [...len(1, ascii("a")), ...len(1, ascii("b"))],
    [0x10, 0x01, 0x10, 0x00],
    [0x10, 0x02],
    [0x10, ...varint(2 ** 40)],
    [0x10, 0x80, 0x00],
    [0x18, 0x01],
    [0x08, 0x01],
    [0x12, 0x01, 0x01],
    [...len(1, [0xff])],
    [0x0a, 0x05, 0x41],
    [0x10],
  ];
  for (const bytes of gets) assertSame(GetSessionRequestSchema, new Uint8Array(bytes));
});

test("random mutations of valid messages: the same message or the same error", () => {
  const next = random(11);
  for (let i = 0; i < 3000; i++) {
    const bytes = Uint8Array.from(createRequest(next));
    const edits = 1 + Math.floor(next() * 3);
    for (let e = 0; e < edits && bytes.length > 0; e++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256);
    assertSame(CreateSessionRequestSchema, bytes);
    const get = Uint8Array.from(getRequest(next));
    if (get.length > 0) get[Math.floor(next() * get.length)] = Math.floor(next() * 256);
    assertSame(GetSessionRequestSchema, get);
  }
});
