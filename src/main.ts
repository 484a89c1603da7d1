/**
 * The sessiond process: reads the configuration from the environment, starts
 * the service, and shuts it down gracefully on SIGINT or SIGTERM.
 *
 * Exit codes: 0 after a graceful shutdown (or --help, --version), 1 when the
 * service fails to stop, 2 when it cannot start (invalid configuration or
 * command line, unreadable TLS file, port in use, Redis unreachable): one line
 * on stderr saying which and why, never a stack trace.
 */
import cluster from "node:cluster";
import { ConfigError, loadConfig, SETTINGS, type Config } from "./config/config.js";
import { startApp, type App } from "./app.js";
import { runPrimary } from "./cluster/primary.js";
import { clusterScrape, expiryWakesEarly, onPrimaryShutdown } from "./cluster/worker.js";
import { registry } from "./observability/metrics.js";
import { createLogger } from "./logging/logger.js";
import { buildInfo } from "./observability/build-info.js";
import { startTracing } from "./observability/tracing.js";
import { StartError } from "./startup/start-error.js";
import { bindAccessorGlobals } from "./startup/global-bindings.js";

const EXIT_FAILURE = 1;
const EXIT_BAD_CONFIG = 2;

bindAccessorGlobals();

function usage(): string {
  const width = Math.max(...SETTINGS.map((s) => s.env.length));
  const lines = SETTINGS.map((s) => `  ${s.env.padEnd(width)}  ${s.description}${s.default === "" ? "" : ` (default ${s.default})`}`);
  return ["Usage: sessiond", "", "gRPC session service. Configured by environment variables:", ...lines, ""].join("\n");
}

// Settings are environment variables; the only flags are these. Anything else is a mistake
// (a setting passed as a flag, a typo) that would otherwise be silently ignored.
const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  process.stdout.write(usage());
  process.exit(0);
}
if (args.includes("--version") || args.includes("-v")) {
  const info = buildInfo();
  process.stdout.write(`sessiond ${info.version} (revision ${info.revision}, node ${info.nodeVersion})\n`);
  process.exit(0);
}
if (args.length > 0) {
  process.stderr.write(`sessiond: unknown argument ${JSON.stringify(args[0])}: settings are environment variables (see --help); flags: --help, --version\n`);
  process.exit(EXIT_BAD_CONFIG);
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

const logger = createLogger({ level: config.logLevel, format: config.logFormat });
// Before the server exists, so every call is traced; undefined (nothing registered) without an OTLP endpoint.
const tracing = startTracing({ serviceVersion: buildInfo().version });

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
    app = await startApp(config, { logger, expiryWakesEarly: expiryWakesEarly(), ...(worker ? { metrics: clusterScrape(registry) } : {}) });
  } catch (error) {
    if (error instanceof ConfigError) exitBadConfig(error);
    // StartError messages name the setting or address and the cause; anything else is reported by class and message.
    const message =
      error instanceof StartError || (error instanceof Error && error.name === "Error")
        ? error.message
        : error instanceof Error
          ? `${error.name}: ${error.message}`
          : String(error);
    process.stderr.write(`sessiond: cannot start: ${message.split("\n")[0]}\n`);
    process.exit(EXIT_BAD_CONFIG);
  }

  const target = new URL(app.url).host;
  const grpcurl = config.tls === undefined ? `grpcurl -plaintext ${target} list` : `grpcurl ${target} list`;
  logger.info(
    { address: app.url, store: app.store.kind, tls: config.tls !== undefined, tracing: tracing !== undefined, version: buildInfo().version, try: grpcurl },
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
    logger.info({ signal, delayMs: config.shutdownDelayMs, timeoutMs: config.shutdownTimeoutMs }, "shutting down");
    // The bound: app.close() serves on for SHUTDOWN_DELAY, then cuts in-flight calls before SHUTDOWN_TIMEOUT
    // (see drainTimeoutMs), so this fires only if closing itself hangs.
    setTimeout(() => {
      logger.error({ timeoutMs: config.shutdownTimeoutMs }, "shutdown did not finish within SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT: exiting");
      process.exit(EXIT_FAILURE);
    }, config.shutdownDelayMs + config.shutdownTimeoutMs).unref();
    try {
      await app.close();
    } catch (error) {
      logger.error({ err: error }, "shutdown failed");
      process.exit(EXIT_FAILURE);
    }
    // The spans of the last calls; a collector that is down must not hold the exit (the SHUTDOWN_TIMEOUT timer bounds it).
    await tracing?.shutdown().catch((error: unknown) => logger.warn({ error: error instanceof Error ? error.message : String(error) }, "trace export at shutdown failed"));
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
