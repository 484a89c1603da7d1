/**
 * The service's pino logger: JSON lines on stdout (or on the given stream,
 * which is how tests capture output in-process).
 *
 * Nothing here redacts values: the code that logs is responsible for never
 * passing session metadata or data values in the first place (see the RPC
 * logging interceptor), because redaction by path silently misses new fields.
 */
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** A pino level name ("info", "debug", ..., "silent"). */
  readonly level: string;
  /** Where the JSON lines go; stdout when absent. */
  readonly destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pinoOptions = {
    level: options.level,
    base: { service: "sessiond" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination === undefined ? pino(pinoOptions) : pino(pinoOptions, options.destination);
}
