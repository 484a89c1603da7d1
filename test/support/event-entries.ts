/**
 * The fields of a raw event-log entry by name, in either form the reader takes
 * (event-codec.ts): packed (one field holding every value, what emit() writes)
 * or named (one field per value). For tests that read the log with XRANGE.
 */
import { PACKED_FIELD, PACKED_ORDER, PACKED_SEPARATOR } from "../../src/store/redis/event-codec.js";

export function entryFields(flat: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i] as string;
    const value = flat[i + 1] as string;
    if (name === PACKED_FIELD) value.split(PACKED_SEPARATOR).forEach((v, n) => out.set(PACKED_ORDER[n] ?? `#${n}`, v));
    else out.set(name, value);
  }
  return out;
}
