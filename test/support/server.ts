/**
 * Starts the real app (startApp) on a free port for a test, and captures its
 * pino output in-process when a test needs to read the logs.
 */
import type { DestinationStream } from "pino";
import { startApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config/config.js";
import { createLogger, type Logger } from "../../src/logging/logger.js";

export interface TestAppOptions {
  /** Use the RedisStore on this server; default: MemoryStore. */
  readonly redisUrl?: string;
  /** Extra environment settings (e.g. { REDIS_COMMAND_TIMEOUT: "200ms" }). */
  readonly env?: Readonly<Record<string, string>>;
  /** Default: a silent logger. */
  readonly logger?: Logger;
}

export async function startTestApp(options: TestAppOptions = {}): Promise<App> {
  const config = loadConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "silent",
    ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl }),
    ...options.env,
  });
  return startApp(config, { logger: options.logger ?? createLogger({ level: "silent" }) });
}

/** One parsed pino line. */
export type LogLine = Readonly<Record<string, unknown>>;

export interface LogCapture {
  readonly logger: Logger;
  /** Every line written so far, raw. */
  text(): string;
  /** Every line written so far, parsed. */
  lines(): LogLine[];
}

/** A logger whose JSON lines are kept in memory instead of written to stdout. */
export function captureLogs(level = "debug"): LogCapture {
  const chunks: string[] = [];
  const destination: DestinationStream = { write: (line: string) => void chunks.push(line) };
  const text = (): string => chunks.join("");
  return {
    logger: createLogger({ level, destination }),
    text,
    lines: () =>
      text()
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as LogLine),
  };
}
