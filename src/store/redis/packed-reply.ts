/**
 * Reads a batch's reply (run_batch in scripts.ts), which Redis's
 * cmsgpack.pack wrote as one MessagePack value, into the values ioredis
 * makes of the same Lua value sent as an FCALL's reply over RESP2: a string
 * is its bytes read as UTF-8 (as ioredis converts a bulk string), a number
 * an integer (Redis truncates it), true 1, false null, a table an array that
 * ends at its first nil, and a table with a string `err` or `ok` field the
 * error or the status it stands for.
 *
 * Read by ioredis, a batch of gets is an array of about 11 bulk strings a get,
 * each decoded, collected and then converted to a string by its own steps
 * (Command.transformReply); one bulk string read as a Buffer and walked here
 * in one pass costs a fraction of that.
 *
 * Hand-written: it reads what cmsgpack.pack writes (no bin, ext or timestamp
 * types) and makes exactly these values, which a general MessagePack library
 * would not.
 */

/** An unexpected byte or a value cut short: the reply is not run_batch's. */
export class PackedReplyError extends Error {
  override readonly name = "PackedReplyError";
}

/** The value `bytes` (one MessagePack value, as cmsgpack.pack writes a Lua value) stands for in a RESP2 reply. */
export function unpackReply(bytes: Buffer): unknown {
  const reader = new Reader(bytes);
  const value = reader.value();
  if (reader.at !== bytes.length) throw new PackedReplyError("trailing bytes after a packed reply");
  return value;
}

class Reader {
  at = 0;

  constructor(private readonly bytes: Buffer) {}

  value(): unknown {
    const { bytes } = this;
    if (this.at >= bytes.length) throw new PackedReplyError("a packed reply ends early");
    const type = bytes[this.at++] as number;
    if (type >= 0xa0 && type <= 0xbf) return this.text(type & 0x1f);
    if (type >= 0x90 && type <= 0x9f) return this.array(type & 0x0f);
    if (type <= 0x7f) return type;
    if (type >= 0xe0) return type - 0x100;
    if (type >= 0x80 && type <= 0x8f) return this.map(type & 0x0f);
    switch (type) {
      case 0xd9:
        return this.text(this.uint(1));
      case 0xda:
        return this.text(this.uint(2));
      case 0xdb:
        return this.text(this.uint(4));
      case 0xdc:
        return this.array(this.uint(2));
      case 0xdd:
        return this.array(this.uint(4));
      case 0xde:
        return this.map(this.uint(2));
      case 0xdf:
        return this.map(this.uint(4));
      case 0xc0:
      case 0xc2:
        return null;
      case 0xc3:
        return 1;
      case 0xcc:
        return this.uint(1);
      case 0xcd:
        return this.uint(2);
      case 0xce:
        return this.uint(4);
      case 0xcf:
        return replyInteger(this.big(false));
      case 0xd0:
        return this.int(1);
      case 0xd1:
        return this.int(2);
      case 0xd2:
        return this.int(4);
      case 0xd3:
        return replyInteger(this.big(true));
      case 0xca:
        return truncated(this.bytes.readFloatBE(this.take(4)));
      case 0xcb:
        return truncated(this.bytes.readDoubleBE(this.take(8)));
      default:
        throw new PackedReplyError(`unexpected type byte 0x${type.toString(16)} in a packed reply`);
    }
  }

  /** The offset of the next `n` bytes, which are skipped. */
  private take(n: number): number {
    const at = this.at;
    if (at + n > this.bytes.length) throw new PackedReplyError("a packed reply ends early");
    this.at = at + n;
    return at;
  }

  private uint(n: 1 | 2 | 4): number {
    return this.bytes.readUIntBE(this.take(n), n);
  }

  private int(n: 1 | 2 | 4): number {
    return this.bytes.readIntBE(this.take(n), n);
  }

  private big(signed: boolean): bigint {
    const at = this.take(8);
    return signed ? this.bytes.readBigInt64BE(at) : this.bytes.readBigUInt64BE(at);
  }

  private text(length: number): string {
    const at = this.take(length);
    return this.bytes.toString("utf8", at, at + length);
  }

  private array(length: number): unknown[] {
    const out = new Array<unknown>(length);
    for (let i = 0; i < length; i++) out[i] = this.value();
    return out;
  }

  /**
   * A table cmsgpack did not write as an array: one with an `err` or `ok`
   * field, or with a hole (Redis's reply ends at the first nil).
   */
  private map(length: number): unknown {
    const entries = new Map<unknown, unknown>();
    for (let i = 0; i < length; i++) {
      const key = this.value();
      entries.set(key, this.value());
    }
    const err = entries.get("err");
    if (typeof err === "string") return replyError(err);
    const ok = entries.get("ok");
    if (typeof ok === "string") return redisLine(ok);
    const out: unknown[] = [];
    for (let i = 1; entries.has(i); i++) out.push(entries.get(i));
    return out;
  }
}

/**
 * An error in a reply, as ioredis gives it: named ReplyError, with Redis's
 * text as a line (redisLine).
 */
function replyError(text: string): Error {
  const error = new Error(redisLine(text));
  error.name = "ReplyError";
  return error;
}

/** A status or error text as Redis writes it: as a C string (ending at a NUL), a line break as a space. */
function redisLine(text: string): string {
  const end = text.indexOf("\u0000");
  return (end === -1 ? text : text.slice(0, end)).replace(/[\r\n]/g, " ");
}

/**
 * A Lua number that is not an integer as Redis replies it: converted to a
 * long long (truncated; x86-64 makes one it cannot hold, NaN included, the
 * smallest), never -0.
 */
function truncated(n: number): number {
  const whole = Math.trunc(n);
  return replyInteger(whole >= -TWO_63 && whole < TWO_63 ? BigInt(whole) : -(2n ** 63n));
}

const TWO_63 = 2 ** 63;

/**
 * An integer as ioredis reads Redis's decimal text of it: digit by digit in a
 * double (value * 10 + code - 48), which near and beyond 2^53 can differ from
 * the nearest double.
 */
function replyInteger(n: bigint): number {
  if (n > -EXACT && n < EXACT) return Number(n);
  const digits = (n < 0n ? -n : n).toString();
  let value = 0;
  for (let i = 0; i < digits.length; i++) value = value * 10 + digits.charCodeAt(i) - 48;
  return n < 0n ? -value : value;
}

/** Below this, no step of ioredis's reading leaves the integers a double holds exactly. */
const EXACT = 2n ** 52n;
