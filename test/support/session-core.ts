/**
 * A SessionManager with the event hub and expiry scheduler app.ts composes
 * beside it, for tests that run the session layer without a server.
 */
import type { Logger } from "pino";
import { createBackground, type Background, type BackgroundOptions } from "../../src/app.js";
import { SessionManager, type SessionManagerOptions } from "../../src/session/session-manager.js";

export interface SessionCore {
  readonly manager: SessionManager;
  readonly background: Background;
}

export function sessionCore(options: SessionManagerOptions & BackgroundOptions & { readonly logger: Logger }): SessionCore {
  const { logger, sweepBatchSize, ...managerOptions } = options;
  return {
    manager: new SessionManager(managerOptions),
    background: createBackground(options.store, options.config, logger, sweepBatchSize === undefined ? {} : { sweepBatchSize }),
  };
}
