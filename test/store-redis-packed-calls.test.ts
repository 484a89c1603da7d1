/**
 * packCalls (packed-calls.ts): what Redis's cmsgpack.unpack makes of a
 * batch's packed arguments is, string for string, what the same arguments
 * sent as an FCALL's own arguments are in ARGV. Checked on a real Redis
 * over generated calls: ASCII and not, lone surrogates, empty and long
 * strings around every header size, Buffers, numbers of every kind, short
 * and long calls.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { packCalls } from "../src/store/redis/packed-calls.js";
import type { ScriptArg } from "../src/store/redis/script-library.js";
import { useRedisServer } from "./support/redis-server.js";

/** The unpacked calls, each as its count then its strings, flattened. */
const UNPACKED = `
local calls = cmsgpack.unpack(ARGV[1])
local out = { #calls }
for i = 1, #calls do
  local call = calls[i]
  out[#out + 1] = #call
  for j = 1, #call do
    if type(call[j]) ~= 'string' then return redis.error_reply('not a string: ' .. type(call[j])) end
    out[#out + 1] = call[j]
  end
end
return out`;

/** The same arguments as ARGV has them, in the same shape. */
const PLAIN = `
local out, at = { tonumber(ARGV[1]) }, 2
for i = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[at])
  out[#out + 1] = n
  for j = 1, n do out[#out + 1] = ARGV[at + j] end
  at = at + n + 1
end
return out`;

/** A small deterministic generator (the same cases every run). */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

const PIECES = ["a", "Z", "0", " ", "-", "\"", "\\", "\u0000", "\u007f", "\u0080", "é", "ß", "€", "\u07ff", "\u0800", "\uffff", "😀", "\ud800", "\udfff", "\n"];
/** Lengths around the packer's choices: short-string loop, str8/str16/str32 headers. */
const LENGTHS = [0, 1, 2, 31, 32, 84, 85, 86, 127, 128, 129, 255, 256, 1000, 21_845, 21_846, 65_535, 65_536, 70_000];
const NUMBERS = [0, 1, -1, 42, 3_600_000, 2 ** 31, 2 ** 53 - 1, -(2 ** 53), 0.5, -0.25, 1e21, 1.7976931348623157e308, 5e-324, -0, Number.NaN, Infinity, -Infinity];

const ASCII_PIECES = PIECES.filter((piece) => /^[\x00-\x7f]*$/.test(piece));

/** `ascii`: strings of ASCII only (packCalls' latin1 path); else any (a batch with one non-ASCII string is packed as UTF-8). */
function generatedArg(next: () => number, ascii: boolean): ScriptArg {
  const pieces = ascii ? ASCII_PIECES : PIECES;
  const kind = next();
  // Mostly the short values calls carry; now and then one of a length around a size the packer chooses by.
  const length = next() < 0.05 ? LENGTHS[Math.floor(next() * LENGTHS.length)]! : Math.floor(next() * 40);
  if (kind < 0.15) return NUMBERS[Math.floor(next() * NUMBERS.length)]!;
  if (kind < 0.3) {
    const bytes = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) bytes[i] = Math.floor(next() * 256);
    return bytes;
  }
  if (kind < 0.65) {
    let text = "";
    while (text.length < length) text += String.fromCharCode(0x20 + Math.floor(next() * 95));
    return text.slice(0, length);
  }
  let text = "";
  while (text.length < length) text += pieces[Math.floor(next() * pieces.length)]!;
  return text;
}

function generatedCalls(next: () => number, ascii: boolean): ScriptArg[][] {
  const calls: ScriptArg[][] = [];
  const count = 1 + Math.floor(next() * 20);
  for (let i = 0; i < count; i++) {
    // Calls of 3 to 8 arguments (short ones) and up to 70 (longer than run_batch's unpack).
    const width = 3 + Math.floor(next() * (next() < 0.5 ? 6 : 68));
    const call: ScriptArg[] = [];
    for (let j = 0; j < width; j++) call.push(generatedArg(next, ascii));
    calls.push(call);
  }
  return calls;
}

describe("packCalls", () => {
  const server = useRedisServer();

  const same = async (calls: readonly (readonly ScriptArg[])[]): Promise<void> => {
    const plainArgs: ScriptArg[] = [calls.length];
    for (const call of calls) {
      plainArgs.push(call.length);
      for (const arg of call) plainArgs.push(arg);
    }
    const [unpacked, plain] = await Promise.all([
      server.raw.callBuffer("EVAL", UNPACKED, 0, packCalls(calls)) as Promise<unknown>,
      server.raw.callBuffer("EVAL", PLAIN, 0, ...plainArgs) as Promise<unknown>,
    ]);
    assert.deepEqual(unpacked, plain);
  };

  it("unpacks in Redis to what each argument is in ARGV", async () => {
    const next = random(7);
    for (let round = 0; round < 300; round++) await same(generatedCalls(next, round % 2 === 0));
  });

  it("every piece alone and a string of each at every length", async () => {
    await same(PIECES.map((piece) => [piece, piece.repeat(2), piece.repeat(200)]));
    for (const length of LENGTHS) await same([PIECES.map((piece) => piece.repeat(length).slice(0, Math.max(length, 1)))]);
    await same([NUMBERS, [Buffer.alloc(0), Buffer.alloc(255, 0xff), Buffer.alloc(256, 0x80), Buffer.alloc(65_536, 1)]]);
  });

  it("calls of 15, 16 and 65,536 arguments (array header sizes)", async () => {
    await same([Array.from({ length: 15 }, (_, i) => `a${i}`), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 65_536 }, () => "")]);
  });
});
