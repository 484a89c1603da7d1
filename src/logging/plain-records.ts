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
  const fields = JSON.stringify(record);
  const body = fields.length > 2 ? `,${fields.slice(1, -1)}` : "";
  fast.destination.write(`{"level":${LEVEL_NUMBERS[level]}${isoTime()}${fast.bindings}${body},"msg":${JSON.stringify(msg)}}\n`);
}
