/**
 * Composes the service: config → store → event bus → session manager (with its
 * expiry sweeper) → Connect routes (SessionService, and grpc.health.v1.Health
 * answered from a cached store ping) → the single-port RPC server.
 *
 * main.ts runs it as a process; tests and the benchmark start it in-process on
 * port 0 and talk to it over the network like any client.
 */
import type { Logger } from "pino";
import { sessionServiceRoutes } from "./api/session-service.js";
import type { Config } from "./config/config.js";
import { HealthMonitor } from "./health/health-monitor.js";
import { healthServiceRoutes } from "./health/health-service.js";
import { createLogger } from "./logging/logger.js";
import { startRpcServer } from "./server/rpc-server.js";
import { SessionManager } from "./session/session-manager.js";
import { createStore } from "./store/create-store.js";
import type { SessionStore } from "./store/store.js";
import { SessionEventBus } from "./streaming/session-event-bus.js";

/**
 * How often the health monitor pings the store. Probes read the cached status,
 * so this bounds how stale a probe's answer can be, not how often Redis is hit per probe.
 */
const HEALTH_INTERVAL_MS = 1000;

export interface AppOptions {
  /** Default: a pino logger on stdout at config.logLevel. */
  readonly logger?: Logger;
}

export interface App {
  /** Base URL for clients, e.g. "http://127.0.0.1:8080". */
  readonly url: string;
  readonly port: number;
  readonly store: SessionStore;
  readonly manager: SessionManager;
  /** Stops health checks and the sweeper, drains and closes the server, then disposes of the store. Idempotent. */
  close(): Promise<void>;
}

export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const store = createStore(config, logger);
  const events = new SessionEventBus({ logger: logger.child({ component: "event-bus" }) });
  const manager = new SessionManager({ store, config, events, logger: logger.child({ component: "session-manager" }) });
  const sessionRoutes = sessionServiceRoutes(manager, { config, tenant: () => config.defaultTenant });
  const health = new HealthMonitor({
    store,
    intervalMs: HEALTH_INTERVAL_MS,
    timeoutMs: config.redisCommandTimeoutMs,
    logger: logger.child({ component: "health" }),
  });
  const healthRoutes = healthServiceRoutes(health);

  // Known status before the first probe can arrive (settles, never rejects, within the ping timeout).
  await health.start();
  const server = await startRpcServer({
    routes: (router) => {
      sessionRoutes(router);
      healthRoutes(router);
    },
    config,
    logger,
  }).catch(async (error: unknown) => {
    // Nothing else holds the store yet: release it so the process can exit.
    health.stop();
    await store.dispose();
    throw error;
  });
  manager.startSweeper();

  let closed: Promise<void> | undefined;
  return {
    url: server.url,
    port: server.port,
    store,
    manager,
    close(): Promise<void> {
      closed ??= (async () => {
        // NOT_SERVING first, so health watchers move away before the port closes.
        health.stop();
        await manager.stop();
        await server.close();
        await store.dispose();
      })();
      return closed;
    },
  };
}
