/**
 * The per-call records (an RPC's log line, its audit record) written in
 * pino's JSON line format with one JSON.stringify, instead of pino's
 * field-by-field serializer, which costs several times more per record.
 *
 * Only for loggers registered here by the code that made them (logger.ts,
 * audit-log.ts), whose whole configuration is known: base bindings of plain
 * values, the isoTime timestamp, the default message key and level numbers,
 * no serializers, hooks, mixins, formatters or redaction. Any other logger
 * (a child, a test's own, a pretty one) gets its record through pino as usual.
 * Records are of plain fields (strings, finite numbers, booleans; undefined
 * fields are left out, as pino leaves them out).
 */
import type { DestinationStream, Logger } from "pino";
import { isoTime } from "./iso-time.js";

export type PlainLevel = "debug" | "info" | "warn";

/** pino's default level numbers. */
const LEVEL_NUMBERS: Readonly<Record<PlainLevel, number>> = { debug: 20, info: 30, warn: 40 };

interface Registered {
  readonly destination: DestinationStream;
  /** The base bindings as pino writes them after the time: `,"service":"sessiond"`. */
  readonly bindings: string;
}

const registered = new WeakMap<Logger, Registered>();

/**
 * Registers `logger`, made with pino({ base, timestamp: isoTime }, destination)
 * and nothing else, for plainRecord. A destination that takes pino's
 * per-line metadata (pino.multistream routes lines by it) is not registered.
 */
export function registerPlainRecords(logger: Logger, destination: DestinationStream, base: Readonly<Record<string, string | boolean>>): Logger {
  if ((destination as unknown as Record<symbol, unknown>)[Symbol.for("pino.metadata")] === true) return logger;
  const text = JSON.stringify(base);
  registered.set(logger, { destination, bindings: text.length > 2 ? `,${text.slice(1, -1)}` : "" });
  return logger;
}

/** Logs `record` with message `msg` at `level`: the line logger[level](record, msg) writes. */
export function plainRecord(logger: Logger, level: PlainLevel, record: object, msg: string): void {
  const fast = registered.get(logger);
  if (fast === undefined) {
    logger[level](record, msg);
    return;
  }
  if (!logger.isLevelEnabled(level)) return;
  fast.destination.write(`{"level":${LEVEL_NUMBERS[level]}${isoTime()}${fast.bindings}${fieldsText(record)},"msg":${JSON.stringify(msg)}}\n`);
}

/** Printable ASCII other than `"` and `\`: a string JSON.stringify writes as it is, between quotes. */
const VERBATIM = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** `,"key":` per field name: the records' own field names, a small fixed set (bounded all the same). */
const keyPrefixes = new Map<string, string>();
const KEY_PREFIXES_MAX = 256;

function keyPrefix(key: string): string {
  let prefix = keyPrefixes.get(key);
  if (prefix === undefined) {
    prefix = `,${JSON.stringify(key)}:`;
    if (keyPrefixes.size < KEY_PREFIXES_MAX) keyPrefixes.set(key, prefix);
  }
  return prefix;
}

/**
 * The record's fields as JSON.stringify writes them, without the braces and
 * with a leading comma. Field by field for plain strings, numbers and
 * booleans (what the per-call records hold), which costs less than
 * JSON.stringify's generic walk; any other record goes through it whole.
 */
function fieldsText(record: object): string {
  if (Object.getPrototypeOf(record) !== Object.prototype) return stringified(record);
  let out = "";
  for (const key in record) {
    const value: unknown = (record as Readonly<Record<string, unknown>>)[key];
    switch (typeof value) {
      case "undefined":
        continue;
      case "string":
        out += `${keyPrefix(key)}${VERBATIM.test(value) ? `"${value}"` : JSON.stringify(value)}`;
        continue;
      case "number":
        out += `${keyPrefix(key)}${Number.isFinite(value) ? String(value) : "null"}`;
        continue;
      case "boolean":
        out += `${keyPrefix(key)}${value ? "true" : "false"}`;
        continue;
      default:
        return stringified(record);
    }
  }
  return out;
}

function stringified(record: object): string {
  const fields = JSON.stringify(record);
  return fields.length > 2 ? `,${fields.slice(1, -1)}` : "";
}
