/**
 * unpackReply (packed-reply.ts): a Lua value that Redis's cmsgpack.pack
 * packed (as run_batch packs a batch's replies) reads as exactly what
 * ioredis makes of the same value returned as the script's reply. Checked on
 * a real Redis over generated values: strings of every kind (ASCII, UTF-8,
 * bytes that are not UTF-8, empty, long, around every header size), integers
 * and numbers that are not, booleans, nested and empty arrays, tables with
 * holes, error and status tables, and batch-shaped replies with failed calls.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { unpackReply } from "../src/store/redis/packed-reply.js";
import { useRedisServer } from "./support/redis-server.js";

/**
 * The Lua value is built from MessagePack the test writes (cmsgpack.unpack
 * makes a table with holes of an array with nils, and a table with string
 * keys of a map); it is returned as it is, or packed as run_batch packs.
 */
const SCRIPT = `
local value = cmsgpack.unpack(ARGV[1])
if ARGV[2] == 'packed' then return cmsgpack.pack(value) end
return value`;

/** A Lua value to build: bytes, a number, a boolean, nil, an array (nil: a hole), or a table with keys. */
type LuaValue = Buffer | number | boolean | null | LuaValue[] | LuaTable;
interface LuaTable {
  readonly entries: readonly (readonly [string | number, LuaValue])[];
}

function written(value: LuaValue): Buffer {
  if (value === null) return Buffer.from([0xc0]);
  if (typeof value === "boolean") return Buffer.from([value ? 0xc3 : 0xc2]);
  if (typeof value === "number") {
    const out = Buffer.alloc(9);
    if (Number.isSafeInteger(value) && !Object.is(value, -0)) {
      out[0] = 0xd3;
      out.writeBigInt64BE(BigInt(value), 1);
    } else {
      out[0] = 0xcb;
      out.writeDoubleBE(value, 1);
    }
    return out;
  }
  if (Buffer.isBuffer(value)) return Buffer.concat([header(0xdb, value.length), value]);
  if (Array.isArray(value)) return Buffer.concat([header(0xdd, value.length), ...value.map(written)]);
  return Buffer.concat([header(0xdf, value.entries.length), ...value.entries.flatMap(([key, item]) => [written(typeof key === "string" ? Buffer.from(key) : key), written(item)])]);
}

function header(type: number, length: number): Buffer {
  const out = Buffer.alloc(5);
  out[0] = type;
  out.writeUInt32BE(length, 1);
  return out;
}

/** A small deterministic generator (the same cases every run). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

const PIECES = ["a", "Z", "0", " ", "\u0000", "\u007f", "\r\n", "é", "ß", "€", "\u07ff", "\u0800", "\uffff", "😀"];
/** Lengths around cmsgpack's string headers (fixstr < 32, str8, str16, str32). */
const LENGTHS = [0, 1, 31, 32, 33, 255, 256, 65_535, 65_536, 70_000];
const NUMBERS = [0, 1, -1, 42, 127, 128, -32, -33, 255, 256, 65_535, 65_536, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 53), 2 ** 60 + 2 ** 10, -(2 ** 62), 0.5, -0.5, 1.9, -1.9, 1e15 + 0.5, 3.25e18, 1e300, -1e300, Number.NaN, Infinity, -Infinity, -0];

function pick<T>(next: () => number, from: readonly T[]): T {
  return from[Math.floor(next() * from.length)] as T;
}

function generatedBytes(next: () => number): Buffer {
  const length = next() < 0.05 ? pick(next, LENGTHS) : Math.floor(next() * 40);
  const kind = next();
  if (kind < 0.2) {
    // Any bytes: mostly not UTF-8 (ioredis reads them with replacement characters).
    const bytes = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) bytes[i] = Math.floor(next() * 256);
    return bytes;
  }
  const parts: Buffer[] = [];
  for (let bytes = 0; bytes < length; ) {
    const part = Buffer.from(kind < 0.6 ? String.fromCharCode(0x20 + Math.floor(next() * 95)) : pick(next, PIECES));
    parts.push(part);
    bytes += part.length;
  }
  return Buffer.concat(parts);
}

function generatedValue(next: () => number, depth: number): LuaValue {
  const kind = next();
  if (kind < 0.55 || depth >= 4) return generatedBytes(next);
  if (kind < 0.68) return pick(next, NUMBERS);
  if (kind < 0.72) return next() < 0.5;
  if (kind < 0.9) return Array.from({ length: Math.floor(next() * 6) }, () => (next() < 0.05 ? null : generatedValue(next, depth + 1)));
  if (kind < 0.95) {
    const status = next() < 0.5 ? "err" : "ok";
    const text = next() < 0.3 ? Buffer.from("ERR a line\r\nand the next") : generatedBytes(next);
    return { entries: [[status, text], ...(next() < 0.5 ? [[1, generatedValue(next, depth + 1)] as const] : [])] };
  }
  // Integer keys with a gap: Redis's reply ends at the first missing one.
  return { entries: [[1, generatedBytes(next)], [2, generatedBytes(next)], [4, generatedBytes(next)]] };
}

/** What run_batch answers: per call, its header and strings, or a failure ({ '!', text }). */
function generatedBatch(next: () => number): LuaValue[] {
  return Array.from({ length: 1 + Math.floor(next() * 64) }, () => {
    if (next() < 0.1) return [Buffer.from("!"), Buffer.from(next() < 0.5 ? "ERR Error running script: @user_function: 12: boom" : "not_found\nsecond line")];
    const strings = Array.from({ length: Math.floor(next() * 12) }, () => generatedBytes(next));
    return [Buffer.from(String(1_700_000_000_000 + Math.floor(next() * 1e6))), Buffer.from("0"), Buffer.from("ok"), ...strings];
  });
}

/** Errors compared by what callers read of them: name and message. */
function comparable(value: unknown): unknown {
  if (value instanceof Error) return { error: value.name, message: value.message };
  if (Array.isArray(value)) return value.map(comparable);
  return value;
}

describe("unpackReply", () => {
  const server = useRedisServer();

  const same = async (value: LuaValue[]): Promise<void> => {
    const described = written(value);
    const [direct, packed] = await Promise.all([
      server.raw.call("EVAL", SCRIPT, 0, described, "plain") as Promise<unknown>,
      server.raw.callBuffer("EVAL", SCRIPT, 0, described, "packed") as Promise<unknown>,
    ]);
    assert.ok(Buffer.isBuffer(packed));
    assert.deepStrictEqual(comparable(unpackReply(packed)), comparable(direct));
  };

  it("reads generated values as ioredis reads the same value sent as the reply", async () => {
    const next = random(11);
    for (let round = 0; round < 400; round++) await same(Array.from({ length: Math.floor(next() * 8) }, () => generatedValue(next, 1)));
  });

  it("reads generated batch replies, with failed calls, as ioredis reads them", async () => {
    const next = random(5);
    for (let round = 0; round < 200; round++) await same(generatedBatch(next));
  });

  it("every number, every piece and a string at every header length", async () => {
    await same(NUMBERS);
    await same([PIECES.map((piece) => Buffer.from(piece.repeat(300)))]);
    await same(LENGTHS.map((length) => Buffer.alloc(length, 0x61)));
    await same([[], [[]], [true, false], [Buffer.alloc(70_000, 0xff)]]);
    await same(Array.from({ length: 70_000 }, (_, i) => i % 3 === 0 ? Buffer.from(String(i)) : i));
  });

  it("refuses bytes that are not one packed value", () => {
    assert.throws(() => unpackReply(Buffer.from([0x92, 0xa1, 0x61])), /ends early/);
    assert.throws(() => unpackReply(Buffer.from([0x90, 0x90])), /trailing bytes/);
    assert.throws(() => unpackReply(Buffer.from([0xc1])), /unexpected type byte/);
  });
});
