/**
 * The own arguments of every call of a batch (scripts.ts, batchArguments) as
 * one MessagePack value: an array with one array of strings per call, which
 * the batch function reads with Redis's cmsgpack.unpack (run_batch).
 *
 * Sent as FCALL arguments, a batch of 64 creates is over a thousand of them,
 * and ioredis spends several thousand instructions on each (the call's
 * spreads, Command's args.flat(), and toWritable's byte length, header string
 * and write per argument): more than the rest of the create's store work in
 * this process. One argument holding them all costs it one.
 *
 * Every element is a MessagePack str, whose bytes are what ioredis would have
 * sent for the argument: a string's UTF-8 (Buffer's encoding, lone surrogates
 * included), a Buffer's bytes, a number's text as ioredis writes it
 * (numberText). cmsgpack makes each a Lua string, as ARGV elements are (it
 * reads no bin type, and checks no UTF-8).
 * Hand-written: it writes this one shape only, in one pass, which a general
 * MessagePack library would not do for less.
 */
import type { ScriptArg } from "./script-library.js";

/**
 * The packed bytes are built as one string of latin1 characters (one byte
 * each) and written by one Buffer.from: an ASCII argument goes in as it is,
 * so a call costs a few string joins per argument and no native call for most.
 * Whether every string is ASCII is asked once, of all of them joined; when
 * one is not, the batch is packed again with each string's UTF-8.
 */
export function packCalls(owns: readonly (readonly ScriptArg[])[]): Buffer {
  let texts = "";
  let bytes = arrayHeader(owns.length);
  for (const own of owns) {
    bytes += arrayHeader(own.length);
    for (const arg of own) {
      if (typeof arg === "string") {
        bytes += strHeader(arg.length) + arg;
        texts += arg;
      } else if (typeof arg === "number") {
        bytes += numberElement(arg);
      } else {
        bytes += binaryElement(arg);
      }
    }
  }
  return Buffer.from(NON_ASCII.test(texts) ? packedUtf8(owns) : bytes, "latin1");
}

/** packCalls' bytes (as latin1 characters) with every string written as its UTF-8. */
function packedUtf8(owns: readonly (readonly ScriptArg[])[]): string {
  let bytes = arrayHeader(owns.length);
  for (const own of owns) {
    bytes += arrayHeader(own.length);
    for (const arg of own) bytes += typeof arg === "string" ? binaryElement(Buffer.from(arg, "utf8")) : typeof arg === "number" ? numberElement(arg) : binaryElement(arg);
  }
  return bytes;
}

/** A character beyond ASCII: its UTF-8 is more than one byte. */
const NON_ASCII = /[^\x00-\x7f]/;

/** A number as ioredis 6.0.0 sends it (utils toArg): an integer beyond 2^53 with all its digits, any other as String() writes it. */
export function numberText(n: number): string {
  return Number.isInteger(n) && !Number.isSafeInteger(n) ? BigInt(n).toString() : String(n);
}

function numberElement(n: number): string {
  const text = numberText(n);
  return strHeader(text.length) + text;
}

function binaryElement(bytes: Buffer): string {
  return strHeader(bytes.length) + bytes.toString("latin1");
}

/** str8 headers by length, made once: most arguments are short. */
const STR8 = Array.from({ length: 0x100 }, (_, length) => String.fromCharCode(0xd9, length));

function strHeader(length: number): string {
  if (length < 0x100) return STR8[length]!;
  if (length < 0x10000) return String.fromCharCode(0xda, length >>> 8, length & 0xff);
  return String.fromCharCode(0xdb, length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
}

function arrayHeader(length: number): string {
  if (length < 16) return String.fromCharCode(0x90 | length);
  if (length < 0x10000) return String.fromCharCode(0xdc, length >>> 8, length & 0xff);
  return String.fromCharCode(0xdd, length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff);
}
