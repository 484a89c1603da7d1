/**
 * The hand-written encoder of the session responses (src/api/session-encoding.ts)
 * writes exactly the bytes protobuf-es's toBinary writes, for sessions and
 * metadata of every shape (nested, lists, every JSON kind, long and non-ASCII
 * strings, awkward keys), and hands messages it does not know to toBinary.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary, type DescMessage, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  AccessLevel,
  CloseSessionResponseSchema,
  CreateSessionResponseSchema,
  ExtendSessionResponseSchema,
  GetSessionResponseSchema,
  SessionSchema,
  SessionStatus,
  UpdateSessionResponseSchema,
} from "../gen/session/v1/session_pb.js";
import { sessionToProto } from "../src/api/convert.js";
import { sessionResponseEncoders } from "../src/api/session-encoding.js";
import { jsonGenerator, random } from "./support/json-values.js";

const SCHEMAS = [GetSessionResponseSchema, CreateSessionResponseSchema, UpdateSessionResponseSchema, ExtendSessionResponseSchema, CloseSessionResponseSchema];
const encoders = sessionResponseEncoders();

const PIECES = ["", "a", "web", "203.0.113.7", "grüße", "日本語", "✓", "😀", "\u0000", "x".repeat(200), "é".repeat(70), "\ud800", "%,:"];
const KEYS = ["app", "ip", "", "__proto__", "1", "10", "constructor", "ключ", "k".repeat(130)];
const NUMBERS = [0, -0, 1, -1, 100, 0.5, -123.456, 2 ** 53, 1e308, -1e-308, 2 ** 31];
const { text, jsonObject } = jsonGenerator({ pieces: PIECES, keys: KEYS, numbers: NUMBERS });

function session(next: () => number): ReturnType<typeof sessionToProto> {
  const ms = [0, 1, 999, 1_700_000_000_123, -1, -86_400_001, 253_402_300_799_999][Math.floor(next() * 7)] as number;
  const proto = create(SessionSchema, {
    sessionId: next() < 0.1 ? "" : "0f8fad5b-d9cb-469f-a165-70867728950e",
    userId: text(next),
    dataSource: text(next),
    accessLevel: [AccessLevel.UNSPECIFIED, AccessLevel.READ, AccessLevel.WRITE, AccessLevel.ADMIN][Math.floor(next() * 4)] as AccessLevel,
    status: [SessionStatus.UNSPECIFIED, SessionStatus.ACTIVE, SessionStatus.EXPIRED, SessionStatus.CLOSED][Math.floor(next() * 4)] as SessionStatus,
    createTime: timestampFromMs(ms),
    expireTime: next() < 0.1 ? undefined : timestampFromMs(ms + 3_600_000),
    lastAccessTime: timestampFromMs(Math.abs(ms)),
    endTime: next() < 0.5 ? undefined : create(TimestampSchema, { seconds: BigInt(Math.floor(next() * 1e6)) - 500_000n, nanos: Math.floor(next() * 2e9) - 1e9 }),
    ...(next() < 0.1 ? {} : { metadata: jsonObject(next, 0) }),
    version: [0n, 1n, 127n, 128n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n][Math.floor(next() * 7)] as bigint,
  });
  return proto;
}

function assertSame(schema: DescMessage, message: Parameters<typeof toBinary>[1], label: string): void {
  const encoder = encoders.get(schema);
  assert.ok(encoder !== undefined, `an encoder for ${schema.typeName}`);
  const expected = toBinary(schema, message);
  const actual = encoder(message);
  assert.deepEqual(Buffer.from(actual).toString("hex"), Buffer.from(expected).toString("hex"), label);
}

test("the session responses encode to toBinary's bytes, for sessions and metadata of every shape", () => {
  for (let seed = 1; seed <= 3000; seed++) {
    const next = random(seed);
    const schema = SCHEMAS[seed % SCHEMAS.length] as (typeof SCHEMAS)[number];
    const message = create(schema, next() < 0.05 ? {} : { session: session(next) });
    // CreateSessionResponse's `created` and any other flag beside the session.
    const flags = message as unknown as Record<string, unknown>;
    for (const field of schema.fields) if (field.fieldKind === "scalar") flags[field.localName] = next() < 0.5;
    assertSame(schema, message, `seed ${seed}`);
  }
});

test("metadata long enough to need multi-byte lengths at every level encodes as toBinary does", () => {
  const long = "v".repeat(20_000);
  const metadata: JsonObject = { a: long, nested: { list: [long, { deeper: "x".repeat(300) }, Array.from({ length: 400 }, (_, i) => i)] } };
  const message = create(GetSessionResponseSchema, { session: create(SessionSchema, { sessionId: "s", metadata, version: 1n }) });
  assertSame(GetSessionResponseSchema, message, "long metadata");
  // And the buffer it grew for that is not reused wrongly for a small one afterwards.
  const small = create(GetSessionResponseSchema, { session: create(SessionSchema, { sessionId: "t", metadata: { a: 1 } }) });
  assertSame(GetSessionResponseSchema, small, "small after long");
});

test("every session response has its encoder (a response of another shape would be left to toBinary)", () => {
  assert.deepEqual(
    SCHEMAS.filter((schema) => !encoders.has(schema)).map((schema) => schema.typeName),
    [],
  );
});

test("a session from the domain view encodes as toBinary does and decodes back", () => {
  const view = {
    sessionId: "0f8fad5b-d9cb-469f-a165-70867728950e",
    userId: "u-1",
    tenant: "",
    dataSource: "warehouse-a",
    accessLevel: "write" as const,
    status: "active" as const,
    createTime: 1_700_000_000_123,
    expireTime: 1_700_003_600_123,
    lastAccessTime: 1_700_000_100_000,
    endTime: 0,
    metadata: { app: "web", ip: "203.0.113.7", n: 100 },
    version: 7,
  };
  const message = create(GetSessionResponseSchema, { session: sessionToProto(view) });
  assertSame(GetSessionResponseSchema, message, "view");
  const decoded = fromBinary(GetSessionResponseSchema, encoders.get(GetSessionResponseSchema)!(message));
  assert.deepEqual(decoded.session?.metadata, view.metadata);
  assert.equal(decoded.session?.version, 7n);
});

test("sessionToProto builds the message create(SessionSchema) makes: the same fields in the same order, for live and ended sessions", () => {
  const next = random(11);
  const statuses = ["active", "closed", "expired"] as const;
  const levels = ["read", "write", "admin"] as const;
  for (let i = 0; i < 500; i++) {
    const createTime = Math.floor(next() * 4_000_000_000_000);
    const ended = i % 2 === 1;
    const view = {
      sessionId: text(next),
      userId: text(next),
      tenant: "t",
      dataSource: text(next),
      accessLevel: levels[i % 3]!,
      status: ended ? statuses[1 + (i % 2)]! : statuses[0],
      createTime,
      expireTime: createTime + Math.floor(next() * 1e9),
      lastAccessTime: createTime + (i % 7),
      // Milliseconds with and without a fraction of a second, and before 1970.
      endTime: ended ? createTime + (i % 5 === 0 ? -createTime - 1_500 : 999) : 0,
      metadata: jsonObject(next, 0),
      version: Math.floor(next() * 2 ** 40),
    };
    const made = sessionToProto(view);
    const reference = create(SessionSchema, {
      sessionId: view.sessionId,
      userId: view.userId,
      dataSource: view.dataSource,
      accessLevel: made.accessLevel,
      status: made.status,
      createTime: timestampFromMs(view.createTime),
      expireTime: timestampFromMs(view.expireTime),
      lastAccessTime: timestampFromMs(view.lastAccessTime),
      endTime: view.endTime === 0 ? undefined : timestampFromMs(view.endTime),
      metadata: view.metadata,
      version: BigInt(view.version),
    });
    assert.deepStrictEqual(made, reference, `view ${i}`);
    assert.deepStrictEqual(Object.keys(made), Object.keys(reference), `field order of view ${i}`);
    assert.deepStrictEqual(toBinary(SessionSchema, made), toBinary(SessionSchema, reference), `bytes of view ${i}`);
  }
});

test("messages outside the plain shape go to toBinary: unknown fields, values that are not JSON", () => {
  const withUnknown = create(GetSessionResponseSchema, { session: create(SessionSchema, { sessionId: "s" }) });
  withUnknown.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([1]) }];
  assertSame(GetSessionResponseSchema, withUnknown, "unknown fields on the response");
  const sessionUnknown = create(SessionSchema, { sessionId: "s" });
  sessionUnknown.$unknown = [{ no: 77, wireType: 2, data: new Uint8Array([1, 65]) }];
  assertSame(GetSessionResponseSchema, create(GetSessionResponseSchema, { session: sessionUnknown }), "unknown fields on the session");
  const notJson = create(GetSessionResponseSchema, { session: create(SessionSchema, { sessionId: "s", metadata: { a: undefined } as unknown as JsonObject }) });
  assertSame(GetSessionResponseSchema, notJson, "undefined in metadata");
});
