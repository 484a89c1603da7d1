/**
 * The Connect handlers of session.v1.SessionService: validate the request,
 * call the SessionManager, convert the result. Every error leaves through
 * toConnectError, so each failure has exactly one status code.
 */
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import pLimit, { type LimitFunction } from "p-limit";
import {
  CreateSessionResponseSchema,
  GetSessionResponseSchema,
  SessionService,
  type CreateSessionResponse,
  type GetSessionResponse,
  type SessionEvent,
} from "../../gen/session/v1/session_pb.js";
import type { Config } from "../config/config.js";
import { ownFilter } from "../session/access-policy.js";
import type { SessionManager } from "../session/session-manager.js";
import type { EventHub } from "../streaming/event-hub.js";
import { WATCH_CURSOR_METADATA } from "../streaming/watch-protocol.js";
import { WatchInterrupted, watchSessions, type ReadGate, type WatchItem, type WatchSink } from "../streaming/watch-sessions.js";
import { metricsToProto, sessionToProto, valueToProto, watchItemToProto } from "./convert.js";
import { atDeadline, requestTimeoutMs } from "../observability/rpc-outcome.js";
import { toConnectError } from "./errors.js";
import { directWatchSink } from "./watch-direct.js";
import { encodeEndedPageToken, encodePageToken } from "./page-token.js";
import {
  validateCreate,
  validateDataKey,
  validateDataValue,
  validateList,
  validateListEnded,
  validateSessionId,
  validateTtl,
  validateUpdate,
  validateWatch,
} from "./validate.js";

export interface SessionServiceOptions {
  readonly config: Config;
  /**
   * The tenant a call acts on: its authenticated principal's (see
   * auth/security.ts; DEFAULT_TENANT when no credentials are configured).
   * The handlers never pick a tenant themselves.
   */
  readonly tenant: (context?: HandlerContext) => string;
  /**
   * The user a call acts for, if any (its principal's; see auth/principal.ts):
   * the manager then keeps it to that user's sessions. Required, so that no
   * composition can forget it and let a user-bound caller reach every session.
   */
  readonly actingUser: (context: HandlerContext) => string | undefined;
  /**
   * Admits a WatchSessions stream: throws to refuse it (e.g. SessionError
   * limit_exceeded for too many streams of one caller), else returns the
   * function that releases its place when the stream ends. Default: admit all.
   */
  readonly admitWatch?: (context: HandlerContext) => () => void;
  /** Where internal errors are logged. */
  readonly logger: Logger;
  /** The process's reader of the store's event log: watch streams subscribe to it. */
  readonly events: EventHub;
  /** Most events queued for one slow watcher before it is ended (default 1000). */
  readonly watchQueueLimit?: number;
  /** The process's gate for the store reads of starting watches (default: WATCH_START_CONCURRENCY at a time). */
  readonly watchStartGate?: ReadGate;
}

/** Watch items are shared by every watcher of an event: convert each to its message once. */
const PROTOS = new WeakMap<WatchItem, SessionEvent>();

function protoOf(item: WatchItem): SessionEvent {
  let proto = PROTOS.get(item);
  if (proto === undefined) {
    proto = watchItemToProto(item);
    PROTOS.set(item, proto);
  }
  return proto;
}

/**
 * The error a watch ends with when its context aborted: the server's shutdown
 * signal (UNAVAILABLE) as UNAVAILABLE with the cursor to resume from; anything
 * else is the client leaving: its deadline (the server's own timer, or a
 * client that reset the stream when its timer fired, which comes first) as
 * DEADLINE_EXCEEDED, otherwise CANCELLED. Nobody reads these; the log line and
 * the audit record do.
 */
function abortedWatch(reason: unknown, cursor: string, remainingMs: number | undefined, timeoutMs: number | undefined): ConnectError {
  if (reason instanceof ConnectError && reason.code === Code.Unavailable) {
    const resume = cursor === "" ? "list the sessions and watch again" : `resume with resume_cursor ${cursor}`;
    return new ConnectError(`the server is shutting down, ${resume}`, Code.Unavailable);
  }
  if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) return reason;
  if (remainingMs !== undefined && timeoutMs !== undefined && atDeadline(timeoutMs - remainingMs, timeoutMs)) {
    return new ConnectError("the watch's deadline passed", Code.DeadlineExceeded);
  }
  return new ConnectError("the client cancelled the watch", Code.Canceled);
}

export function sessionServiceRoutes(manager: SessionManager, options: SessionServiceOptions): (router: ConnectRouter) => void {
  const impl = createSessionServiceImpl(manager, options);
  return (router) => {
    router.service(SessionService, impl);
  };
}

/** A ReadGate on a p-limit limiter (WATCH_START_CONCURRENCY reads at a time; see ReadGate). */
export function watchStartGate(limit: LimitFunction): ReadGate {
  return (read) => limit(read);
}

/** The service implementation, exported for composition (e.g. with per-service handler options). */
export function createSessionServiceImpl(manager: SessionManager, options: SessionServiceOptions): ServiceImpl<typeof SessionService> {
  const { config } = options;
  const limits = config.limits;
  const { logger } = options;
  const readGate = options.watchStartGate ?? watchStartGate(pLimit(config.watchStartConcurrency));
  const userOf = (ctx: HandlerContext): string | undefined => options.actingUser(ctx);

  /** Runs one unary call, mapping every error to its status code. */
  async function unary<T>(procedure: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw toConnectError(error, logger, procedure);
    }
  }

  return {
    // The busiest two map their errors in their own body: one async step per call rather than unary()'s two.
    createSession: async (req, ctx) => {
      try {
        const params = validateCreate(req, config.ttl);
        const outcome = await manager.create(options.tenant(ctx), params, userOf(ctx));
        // The message itself, as for GetSession below.
        const response: CreateSessionResponse = { $typeName: CreateSessionResponseSchema.typeName, session: sessionToProto(outcome.session), created: outcome.created };
        return response;
      } catch (error) {
        throw toConnectError(error, logger, "CreateSession");
      }
    },

    getSession: async (req, ctx) => {
      try {
        const id = validateSessionId(req.sessionId);
        const session = sessionToProto(await manager.get(options.tenant(ctx), id, req.includeEnded, userOf(ctx)));
        // The message itself (what create() makes of { session }): the server takes it as it is, without create()'s walk of the schema.
        const response: GetSessionResponse = { $typeName: GetSessionResponseSchema.typeName, session };
        return response;
      } catch (error) {
        throw toConnectError(error, logger, "GetSession");
      }
    },

    updateSession: (req, ctx) =>
      unary("UpdateSession", async () => {
        const id = validateSessionId(req.sessionId);
        const params = validateUpdate(req);
        return { session: sessionToProto(await manager.update(options.tenant(ctx), id, params, userOf(ctx))) };
      }),

    extendSession: (req, ctx) =>
      unary("ExtendSession", async () => {
        const id = validateSessionId(req.sessionId);
        const ttlMs = validateTtl(req.ttl, config.ttl);
        return { session: sessionToProto(await manager.extend(options.tenant(ctx), id, ttlMs, userOf(ctx))) };
      }),

    closeSession: (req, ctx) =>
      unary("CloseSession", async () => {
        const id = validateSessionId(req.sessionId);
        return { session: sessionToProto(await manager.close(options.tenant(ctx), id, userOf(ctx))) };
      }),

    listSessions: (req, ctx) =>
      unary("ListSessions", async () => {
        const { filter, pageSize, after } = validateList(req, limits);
        const page = await manager.list(options.tenant(ctx), filter, pageSize, after, userOf(ctx));
        return {
          sessions: page.sessions.map(sessionToProto),
          nextPageToken: page.next === undefined ? "" : encodePageToken(page.next),
        };
      }),

    listEndedSessions: (req, ctx) =>
      unary("ListEndedSessions", async () => {
        if (!manager.hasEndedArchive) {
          throw new ConnectError("ListEndedSessions needs the archive database (ARCHIVE_DATABASE_URL), which this server has not configured", Code.Unimplemented);
        }
        const { filter, pageSize, after } = validateListEnded(req, limits);
        const page = await manager.listEnded(options.tenant(ctx), filter, pageSize, after, userOf(ctx));
        return {
          sessions: page.sessions.map(sessionToProto),
          nextPageToken: page.next === undefined ? "" : encodeEndedPageToken(page.next),
        };
      }),

    setSessionData: (req, ctx) =>
      unary("SetSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        const value = validateDataValue(req.value);
        const outcome = await manager.setData(options.tenant(ctx), id, key, value, userOf(ctx));
        return { version: BigInt(outcome.version) };
      }),

    getSessionData: (req, ctx) =>
      unary("GetSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        return { value: valueToProto(await manager.getData(options.tenant(ctx), id, key, userOf(ctx))) };
      }),

    deleteSessionData: (req, ctx) =>
      unary("DeleteSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const key = validateDataKey(req.key, limits);
        const outcome = await manager.deleteData(options.tenant(ctx), id, key, userOf(ctx));
        return { deleted: outcome.deleted, version: BigInt(outcome.version) };
      }),

    listSessionData: (req, ctx) =>
      unary("ListSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const listing = await manager.listData(options.tenant(ctx), id, req.includeValues, userOf(ctx));
        const values = listing.values === undefined ? [] : [...listing.values].map(([key, value]) => [key, valueToProto(value)] as const);
        // Object.fromEntries: a key named "__proto__" stays an ordinary key.
        return { keys: listing.keys, values: Object.fromEntries(values) };
      }),

    clearSessionData: (req, ctx) =>
      unary("ClearSessionData", async () => {
        const id = validateSessionId(req.sessionId);
        const outcome = await manager.clearData(options.tenant(ctx), id, userOf(ctx));
        return { deletedCount: BigInt(outcome.deletedCount), version: BigInt(outcome.version) };
      }),

    getSessionMetrics: (_req, ctx) =>
      unary("GetSessionMetrics", async () => metricsToProto(await manager.metrics(options.tenant(ctx), userOf(ctx)))),

    async *watchSessions(req, ctx) {
      /** The last cursor sent; an early end hands it back in the watch-cursor trailer. */
      let cursor = "";
      /** Frees this stream's place among its principal's watches (see admitWatch). */
      let release: (() => void) | undefined;
      try {
        const params = validateWatch(req);
        release = options.admitWatch?.(ctx);
        // Live events skip connect's per-message pipeline where the call allows it (watch-direct.ts),
        // from the second message on: the first goes through connect, so the interceptors see the
        // watch start (audit watch_start, message counts) whether or not the head went out early.
        const direct = directWatchSink(ctx, protoOf);
        let yielded = false;
        const sink: WatchSink | undefined =
          direct === undefined
            ? undefined
            : {
                write: (item) => {
                  if (!yielded || !direct.write(item)) return false;
                  if (item.cursor !== "") cursor = item.cursor;
                  return true;
                },
              };
        // A caller acting for a user watches that user's sessions only, whatever the filter says.
        const own = ownFilter(params.filter, userOf(ctx));
        const filter = own === "none" ? { ...params.filter, nobody: true } : own;
        const items = watchSessions(manager, options.events, options.tenant(ctx), filter, {
          sendInitialSnapshot: params.sendInitialSnapshot,
          resumeCursor: params.resumeCursor,
          heartbeatMs: config.watchHeartbeatMs,
          signal: ctx.signal,
          readGate,
          ...(options.watchQueueLimit === undefined ? {} : { queueLimit: options.watchQueueLimit }),
          ...(sink === undefined ? {} : { sink }),
        });
        for await (const item of items) {
          yield { event: protoOf(item) };
          yielded = true;
          if (item.cursor !== "") cursor = item.cursor;
        }

        throw abortedWatch(ctx.signal.reason, cursor, ctx.timeoutMs(), requestTimeoutMs(ctx.requestHeader));
      } catch (error) {
        const connectError = toConnectError(error, logger, "WatchSessions");
        const resumeFrom = error instanceof WatchInterrupted ? error.cursor : cursor;
        if (resumeFrom !== "") connectError.metadata.set(WATCH_CURSOR_METADATA, resumeFrom);
        throw connectError;
      } finally {
        release?.();
      }
    },
  };
}
