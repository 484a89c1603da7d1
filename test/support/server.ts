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
  /** Where audit records go; default: nowhere (AUDIT_LOG=off unless env sets it). */
  readonly auditDestination?: DestinationStream;
}

/** The encryption key test apps on Redis use unless env names others (the service refuses Redis without one). */
export const TEST_ENCRYPTION_KEYS = `test:${Buffer.alloc(32, 7).toString("base64")}`;

export async function startTestApp(options: TestAppOptions = {}): Promise<App> {
  const config = loadConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "silent",
    AUDIT_LOG: "off",
    // Tests close apps directly; the drain's readiness delay is tested on its own.
    SHUTDOWN_DELAY: "0s",
    ...(options.redisUrl === undefined ? {} : { REDIS_URL: options.redisUrl, ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS }),
    ...options.env,
  });
  return startApp(config, {
    logger: options.logger ?? createLogger({ level: "silent" }),
    ...(options.auditDestination === undefined ? {} : { auditDestination: options.auditDestination }),
  });
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

/**
 * Waits until `count` watch streams are registered with the app's event hub;
 * from then on every event written reaches them. Tests wait on this rather
 * than sleeping and hoping the streams got there first.
 */
export async function waitForWatchers(app: Pick<App, "events">, count: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (app.events.subscriberCount !== count) {
    if (Date.now() > deadline) throw new Error(`expected ${count} registered watchers, have ${app.events.subscriberCount} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
