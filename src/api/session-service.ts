/**
 * The Connect handlers of session.v1.SessionService: validate the request,
 * call the SessionManager, convert the result. Every error leaves through
 * toConnectError, so each failure has exactly one status code.
 */
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import type { Config } from "../config/config.js";
import type { SessionManager } from "../session/session-manager.js";
import { watchSessions } from "../streaming/watch-sessions.js";
import { metricsToProto, sessionToProto, valueToProto, watchItemToProto } from "./convert.js";
import { toConnectError } from "./errors.js";
import { encodePageToken } from "./page-token.js";
import {
  validateCreate,
  validateDataKey,
  validateDataValue,
  validateList,
  validateSessionId,
  validateTtl,
  validateUpdate,
  validateWatch,
} from "./validate.js";

export interface SessionServiceOptions {
  readonly config: Config;
  /**
   * The tenant a call acts on. The single seam for authentication: for now it
   * returns the default tenant; later it will derive the tenant from the
   * caller's credentials (hence it gets the handler context).
   */
  readonly tenant: (context?: HandlerContext) => string;
  /** Where internal errors are logged; default: the manager's logger. */
  readonly logger?: Logger;
}

export function sessionServiceRoutes(manager: SessionManager, options: SessionServiceOptions): (router: ConnectRouter) => void {
  const impl = createSessionServiceImpl(manager, options);
  return (router) => {
    router.service(SessionService, impl);
  };
}

/** The service implementation, exported for composition (e.g. with per-service handler options). */
export function createSessionServiceImpl(manager: SessionManager, options: SessionServiceOptions): ServiceImpl<typeof SessionService> {
  const { config } = options;
  const limits = config.limits;
  const logger = options.logger ?? manager.logger;

  /** Runs one unary call, mapping every error to its status code. */
  async function unary<T>(procedure: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toConnectError(error, logger, procedure);
    }
  }

  return {
    createSession: (req, ctx) =>
      unary("CreateSession", async () => {
        const params = validateCreate(req, config.ttl);
        const outcome = await manager.create(options.tenant(ctx), params);
        return { session: sessionToProto(outcome.session), created: outcome.created };
      }),

    getSession: (req, ctx) =>
      unary("GetSession", async () => {
        const id = validateSessionId(req.sessionId);
        return { session: sessionToProto(await manager.get(options.tenant(ctx), id, req.includeEnded)) };
      }),

    updateSession: (req, ctx) =>
      unary("UpdateSession", async () => {
        const id = validateSessionId(req.sessionId);
        const params = validateUpdate(req);
        return { session: sessionToProto(await manager.update(options.tenant(ctx), id, params)) };
      }),

    extendSession: (req, ctx) =>
      unary("ExtendSession", async () => {
        const id = validateSessionId(req.sessionId);
        const ttlMs = validateTtl(req.ttl, config.ttl);
        return { session: sessionToProto(await manager.extend(options.tenant(ctx), id, ttlMs)) };
      }),

    closeSession: (req, ctx) =>
      unary("CloseSession", async () => {
        const id = validateSessionId(req.sessionId);
        return { session: sessionToProto(await manager.close(options.tenant(ctx), id)) };
      }),

    listSessions: (req, ctx) =>
      unary("ListSessions", async () => {
        const { filter, pageSize, after } = validateList(req, limits);
        const page = await manager.list(options.tenant(ctx), filter, pageSize, after);
        return {
          sessions: page.sessions.map(sessionToProto),
          nextPageToken: page.next === undefined ? "" : encodePageToken(page.next),
        };
      }),

    setSessionData: (req, ctx) =>
      unary("SetSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        const value = validateDataValue(req.value);
        const outcome = await manager.setData(options.tenant(ctx), id, key, value);
        return { version: BigInt(outcome.version) };
      }),

    getSessionData: (req, ctx) =>
      unary("GetSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        return { value: valueToProto(await manager.getData(options.tenant(ctx), id, key)) };
      }),

    deleteSessionData: (req, ctx) =>
      unary("DeleteSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        const outcome = await manager.deleteData(options.tenant(ctx), id, key);
        return { deleted: outcome.deleted, version: BigInt(outcome.version) };
      }),

    listSessionData: (req, ctx) =>
      unary("ListSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const listing = await manager.listData(options.tenant(ctx), id, req.includeValues);
        const values = listing.values === undefined ? [] : [...listing.values].map(([key, value]) => [key, valueToProto(value)] as const);
        // Object.fromEntries: a key named "__proto__" stays an ordinary key.
        return { keys: listing.keys, values: Object.fromEntries(values) };
      }),

    clearSessionData: (req, ctx) =>
      unary("ClearSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const outcome = await manager.clearData(options.tenant(ctx), id);
        return { deletedCount: BigInt(outcome.deletedCount), version: BigInt(outcome.version) };
      }),

    getSessionMetrics: (_req, ctx) =>
      unary("GetSessionMetrics", async () => metricsToProto(await manager.metrics(options.tenant(ctx)))),

    async *watchSessions(req, ctx) {
      try {
        const params = validateWatch(req);
        if (params.resumeCursor !== "") {
          // No history is retained yet. OUT_OF_RANGE is what a resume from a
          // compacted position will return later, so clients already take the
          // re-list path (list, then watch with send_initial_snapshot).
          throw new ConnectError("resume_cursor: cursor is older than the retained history; watch again with send_initial_snapshot", Code.OutOfRange);
        }
        const items = watchSessions(manager, options.tenant(ctx), params.filter, {
          sendInitialSnapshot: params.sendInitialSnapshot,
          heartbeatMs: config.watchHeartbeatMs,
          signal: ctx.signal,
        });
        for await (const item of items) {
          yield { event: watchItemToProto(item) };
        }
        if (ctx.signal.aborted) throw ConnectError.from(ctx.signal.reason, Code.Canceled);
      } catch (error) {
        throw toConnectError(error, logger, "WatchSessions");
      }
    },
  };
}
