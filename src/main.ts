/**
 * The sessiond process: reads the configuration from the environment, starts
 * the service, and shuts it down gracefully on SIGINT or SIGTERM.
 *
 * Exit codes: 0 after a graceful shutdown (or --help), 1 when the service
 * fails to start or to stop, 2 when the configuration is invalid.
 */
import { ConfigError, loadConfig, SETTINGS, type Config } from "./config/config.js";
import { startApp, type App } from "./app.js";
import { createLogger } from "./logging/logger.js";

const EXIT_FAILURE = 1;
const EXIT_BAD_CONFIG = 2;

function usage(): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  const lines = SETTINGS.map((s) => `  ${s.env.padEnd(width)}  ${s.description}${s.default === "" ? "" : ` (default ${s.default})`}`);
  return ["Usage: sessiond", "", "gRPC session service. Configured by environment variables:", ...lines, ""].join("\n");
}

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  process.stdout.write(usage());
  process.exit(0);
}

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  // A configuration mistake is the operator's to fix: the message names the variable, a stack trace would only hide it.
  process.stderr.write(`sessiond: invalid configuration: ${error.message}\n`);
  process.exit(EXIT_BAD_CONFIG);
}

const logger = createLogger({ level: config.logLevel });

let app: App;
try {
  app = await startApp(config, { logger });
} catch (error) {
  logger.fatal({ err: error }, "sessiond failed to start");
  process.exit(EXIT_FAILURE);
}

const target = new URL(app.url).host;
logger.info(
  {
    address: app.url,
    store: app.store.kind,
    try: `grpcurl -plaintext -import-path proto -proto session/v1/session.proto ${target} session.v1.SessionService/GetSessionMetrics`,
  },
  `sessiond listening on ${app.url} (store: ${app.store.kind})`,
);

let stopping = false;
async function shutdown(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    // A second signal means "now": do not wait for the drain.
    logger.warn({ signal }, "second signal: exiting without waiting");
    process.exit(EXIT_FAILURE);
  }
  stopping = true;
  logger.info({ signal }, "shutting down");
  try {
    await app.close();
  } catch (error) {
    logger.error({ err: error }, "shutdown failed");
    process.exit(EXIT_FAILURE);
  }
  logger.info("stopped");
  process.exit(0);
}

process.on("SIGINT", (signal) => void shutdown(signal));
process.on("SIGTERM", (signal) => void shutdown(signal));
