/**
 * Everything security adds to the service, set up in one place for app.ts:
 * the start-up refusals (no authentication on a non-loopback address, Redis
 * without encryption keys), the cipher for encryption at rest, the audit log,
 * and the interceptors and hooks that put every call under a principal.
 */
import type { ContextValues, HandlerContext, Interceptor } from "@connectrpc/connect";
import type { Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import type { DestinationStream, Logger } from "pino";
import { createAuditInterceptor } from "../audit/audit-interceptor.js";
import { openAuditLog, type AuditLog } from "../audit/audit-log.js";
import { ConfigError, type Config } from "../config/config.js";
import { cipherForConfig } from "../crypto/cipher-for-config.js";
import type { FieldCipher } from "../crypto/field-cipher.js";
import { createDeadlineInterceptor } from "../limits/deadline-interceptor.js";
import { WatcherLimiter } from "../limits/watcher-limiter.js";
import type { SessionRecord } from "../domain/model.js";
import { loadAuthenticator, type Authenticator } from "./authenticator.js";
import { createAuthInterceptor } from "./interceptor.js";
import { peerContextValues, peerOf, type CallOrigin } from "./peer.js";
import { ACT_AS_HEADER } from "./delegation.js";
import { auditIdentity, hasScope, principalOf } from "./principal.js";

export interface SecurityOptions {
  /** Audit records go here instead of config.auditLog (tests). */
  readonly auditDestination?: DestinationStream;
}

export interface Security {
  readonly authenticator: Authenticator;
  readonly cipher: FieldCipher;
  readonly audit: AuditLog;
  /** Auth, audit and deadline, in that order (outermost first). */
  readonly interceptors: readonly Interceptor[];
  readonly contextValues: (request: CallOrigin) => ContextValues;
  /** The tenant of a call: its principal's. */
  tenant(context?: HandlerContext): string;
  /** The user a call acts for (its principal's bound or delegated user), or undefined for every user of the tenant. */
  actingUser(context: HandlerContext): string | undefined;
  admitWatch(context: HandlerContext): () => void;
  /** For SessionManager's onSystemEnd: audit records of expiries and evictions. */
  onSystemEnd(reason: "expired" | "evicted", record: SessionRecord): void;
  /**
   * Who may read GET /metrics: with AUTH_PROTECT_OPS=true and authentication
   * configured, a bearer credential (or verified client certificate) with
   * scope metrics or admin that acts for no single user; undefined (open) otherwise.
   */
  readonly authorizeMetrics: ((request: IncomingMessage | Http2ServerRequest) => Promise<"ok" | "unauthenticated" | "permission_denied">) | undefined;
  /** Closes the audit destination. */
  close(): void;
}

/** Loopback addresses: the only ones served without authentication unless ALLOW_INSECURE=true. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "::ffff:127.0.0.1";
}

/** Throws ConfigError when the configuration would serve insecurely; warns once when it does on loopback. */
export function setUpSecurity(config: Config, logger: Logger, options: SecurityOptions = {}): Security {
  const authenticator = loadAuthenticator(config);
  if (!authenticator.configured) {
    if (!isLoopbackHost(config.host) && !config.auth.allowInsecure) {
      throw new ConfigError(
        `HOST=${config.host} is not a loopback address and no authentication is configured (API_KEYS_FILE, JWT_HS256_SECRET, JWT_JWKS_FILE or TLS_CLIENT_CA_FILE); ` +
          "configure one, or set ALLOW_INSECURE=true to serve every caller as the default tenant",
      );
    }
    logger.warn(
      { host: config.host, tenant: config.defaultTenant },
      "no authentication is configured: every caller acts as the default tenant with every scope",
    );
  }
  const cipher = cipherForConfig(config, logger);
  const { audit, close } = openAuditLog(config.auditLog, options.auditDestination);
  const watchers = new WatcherLimiter(config.limits.maxWatchersPerPrincipal);
  const tenant = (context?: HandlerContext): string => {
    if (context === undefined) throw new Error("tenant() needs the call's context");
    return principalOf(context).tenant;
  };
  return {
    authenticator,
    cipher,
    audit,
    interceptors: [
      createAuthInterceptor({ authenticator, audit, protectOps: config.auth.protectOps }),
      createAuditInterceptor(audit),
      createDeadlineInterceptor(),
    ],
    contextValues: peerContextValues,
    tenant,
    actingUser: (context) => principalOf(context).user,
    admitWatch: (context) => {
      const principal = principalOf(context);
      return watchers.acquire(`${principal.tenant}\n${principal.id}`);
    },
    onSystemEnd: (reason, record) => audit.system(reason === "expired" ? "expire" : "evict", record.tenant, record.sessionId),
    authorizeMetrics:
      config.auth.protectOps && authenticator.configured
        ? async (request) => {
            const method = "GET /metrics";
            const peer = peerOf(request);
            const header = request.headers.authorization;
            const actAs = request.headers[ACT_AS_HEADER];
            const authentication = await authenticator.authenticate(
              { authorization: typeof header === "string" ? header : null, actAs: typeof actAs === "string" ? actAs : null },
              peer,
            );
            if (!authentication.ok && authentication.outcome === "unauthenticated") {
              audit.record({ principal: "unknown", operation: "authenticate", method, outcome: "unauthenticated", peer: peer.address });
              return "unauthenticated";
            }
            // A refused act-as header is a refusal here too (403), never ignored; and like
            // GetSessionMetrics, the tenant-wide figures are not for a caller acting for one user.
            const principal = authentication.principal;
            if (!authentication.ok || !hasScope(principal, "metrics") || principal.user !== undefined) {
              audit.record({ ...auditIdentity(principal), operation: "authorize", method, outcome: "permission_denied", peer: peer.address });
              return "permission_denied";
            }
            return "ok";
          }
        : undefined,
    close,
  };
}
