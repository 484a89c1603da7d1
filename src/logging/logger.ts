/**
 * The service's pino logger: JSON lines on stdout, batched per event-loop turn
 * (batched-destination.ts: its crash semantics) (or on the given stream,
 * which is how tests capture output in-process), or readable colored lines
 * (pino-pretty) for a person at a terminal.
 *
 * Nothing here redacts values: the code that logs is responsible for never
 * passing session metadata or data values in the first place (see the RPC
 * logging interceptor), because redaction by path silently misses new fields.
 */
import { pino, type DestinationStream, type Logger } from "pino";
import pretty from "pino-pretty";
import { batchedDescriptor } from "./batched-destination.js";
import { isoTime } from "./iso-time.js";
import { registerPlainRecords } from "./plain-records.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** A pino level name ("info", "debug", ..., "silent"). */
  readonly level: string;
  /** "json", "pretty", or "auto" (default): pretty when stdout is a terminal and no destination is given. */
  readonly format?: "auto" | "json" | "pretty";
  /** Where the lines go; stdout when absent. */
  readonly destination?: DestinationStream;
}

const BASE = { service: "sessiond" } as const;

export function createLogger(options: LoggerOptions): Logger {
  const pinoOptions = {
    level: options.level,
    base: BASE,
    timestamp: isoTime,
  };
  const format = options.format ?? "auto";
  const usePretty = format === "pretty" || (format === "auto" && options.destination === undefined && process.stdout.isTTY === true);
  if (usePretty) return pino(pinoOptions, prettyStream(options.destination));
  // stdout: the lines of one event-loop turn in one write, shared with the audit log on stdout (batched-destination.ts).
  const destination = options.destination ?? batchedDescriptor(1);
  // Per-call records (plain-records.ts) may be written without pino's serializer: this configuration is known.
  return registerPlainRecords(pino(pinoOptions, destination), destination, BASE);
}

/**
 * One readable line per record: time, level name, message, then the other
 * fields. An RPC line reads "rpc session.v1.SessionService/GetSession not_found 1.2 ms".
 * Synchronous (no worker thread), so lines are written before the process exits.
 */
function prettyStream(destination: DestinationStream | undefined): DestinationStream {
  const colorize = destination === undefined && process.stdout.isTTY === true;
  return pretty({
    sync: true,
    colorize,
    singleLine: true,
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname,service,method,code,durationMs",
    messageFormat: (log, messageKey) => {
      const message = String(log[messageKey] ?? "");
      if (message !== "rpc") return message;
      return `rpc ${String(log["method"])} ${String(log["code"])} ${String(log["durationMs"])} ms`;
    },
    ...(destination === undefined ? {} : { destination: destination as NodeJS.WritableStream }),
  });
}
