/**
 * The sessiond process: reads the configuration from the environment, starts
 * the service, and shuts it down gracefully on SIGINT or SIGTERM.
 *
 * Exit codes: 0 after a graceful shutdown (or --help), 1 when the service
 * fails to start or to stop, 2 when the configuration is invalid.
 */
import cluster from "node:cluster";
import { ConfigError, loadConfig, SETTINGS, type Config } from "./config/config.js";
import { startApp, type App } from "./app.js";
import { runPrimary } from "./cluster/primary.js";
import { clusterScrape, onPrimaryShutdown } from "./cluster/worker.js";
import { registry } from "./observability/metrics.js";
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

/**
 * A configuration mistake is the operator's to fix: the message names the
 * variable, a stack trace would only hide it. Both loadConfig and startApp's
 * refusals (no encryption key for Redis, no authentication on a public HOST)
 * throw ConfigError.
 */
function exitBadConfig(error: ConfigError): never {
  process.stderr.write(`sessiond: invalid configuration: ${error.message}\n`);
  process.exit(EXIT_BAD_CONFIG);
}

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  exitBadConfig(error);
}

const logger = createLogger({ level: config.logLevel });

if (config.workers > 1 && cluster.isPrimary) {
  // WORKERS > 1: this process only supervises; the workers run this file again and serve.
  runPrimary(config, logger);
} else {
  await serve(config);
}

async function serve(config: Config): Promise<void> {
  const worker = cluster.isWorker;
  let app: App;
  try {
    app = await startApp(config, { logger, ...(worker ? { metrics: clusterScrape(registry) } : {}) });
  } catch (error) {
    if (error instanceof ConfigError) exitBadConfig(error);
    logger.fatal({ err: error }, "sessiond failed to start");
    process.exit(EXIT_FAILURE);
  }

  const target = new URL(app.url).host;
  const grpcurl = config.tls === undefined ? `grpcurl -plaintext ${target} list` : `grpcurl ${target} list`;
  logger.info(
    { address: app.url, store: app.store.kind, tls: config.tls !== undefined, try: grpcurl },
    `sessiond listening on ${app.url} (store: ${app.store.kind}); try: ${grpcurl}`,
  );

  let stopping = false;
  async function shutdown(signal: NodeJS.Signals): Promise<void> {
    if (stopping) {
      // A second signal means "now": do not wait for the drain.
      logger.warn({ signal }, "second signal: exiting without waiting");
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    logger.info({ signal, timeoutMs: config.shutdownTimeoutMs }, "shutting down");
    // The bound: app.close() cuts in-flight calls before it (see drainTimeoutMs), so this fires only if closing itself hangs.
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, "shutdown did not finish within SHUTDOWN_TIMEOUT: exiting");
      process.exit(EXIT_FAILURE);
    }, config.shutdownTimeoutMs).unref();
    try {
      await app.close();
    } catch (error) {
      logger.error({ err: error }, "shutdown failed");
      process.exit(EXIT_FAILURE);
    }
    logger.info("stopped");
    process.exit(0);
  }

  if (worker) {
    onPrimaryShutdown(() => void shutdown("SIGTERM"));
  } else {
    process.on("SIGINT", (signal) => void shutdown(signal));
    process.on("SIGTERM", (signal) => void shutdown(signal));
  }
}
