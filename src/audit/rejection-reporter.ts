/**
 * Makes refused connections and requests visible without letting a flood of
 * them flood the logs: every one counts on `sessiond_rejected_total{kind,
 * reason}`; the first `perSecond` of each second also get their own record
 * (an audit record for a request, a warn log line for a connection); the rest
 * are summed per reason into one warn line per second.
 *
 * Reasons, methods and outcomes passed here are our own fixed names (a method
 * only when the path is a routed RPC), never caller bytes.
 */
import type { Logger } from "pino";
import { countRejected } from "../observability/metrics.js";
import type { AuditLog, AuditOperation } from "./audit-log.js";

export interface Rejection {
  readonly kind: "connection" | "request" | "stream";
  /** Why, e.g. "unauthenticated", "max_connections_per_address", "malformed_body". */
  readonly reason: string;
  /** The status the caller got: a gRPC code name ("resource_exhausted"), or for a connection "closed". */
  readonly outcome: string;
  /** "ip:port" of the caller, when known. */
  readonly peer?: string;
  /** The RPC ("session.v1.SessionService/GetSession") when the path is a routed one. */
  readonly method?: string;
  /** Who, when the refusal came after authentication (auditIdentity of the principal). */
  readonly identity?: { readonly principal: string; readonly tenant: string; readonly user?: string; readonly delegated?: boolean };
  /** Default "reject"; authentication failures are "authenticate". */
  readonly operation?: AuditOperation;
}

export interface RejectionReporterOptions {
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** Individual records per second; 0 records none (counts and summaries only). */
  readonly perSecond: number;
}

const SUMMARY_INTERVAL_MS = 1000;

export class RejectionReporter {
  private windowStart = 0;
  private inWindow = 0;
  private readonly suppressed = new Map<string, number>();
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: RejectionReporterOptions) {}

  report(rejection: Rejection): void {
    countRejected(rejection.kind, rejection.reason);
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow < this.options.perSecond) {
      this.inWindow += 1;
      this.record(rejection);
      return;
    }
    const key = `${rejection.kind}:${rejection.reason}`;
    this.suppressed.set(key, (this.suppressed.get(key) ?? 0) + 1);
    this.summaryTimer ??= setTimeout(() => this.summarize(), SUMMARY_INTERVAL_MS).unref();
  }

  /** Writes the pending summary now (shutdown). */
  flush(): void {
    if (this.summaryTimer !== undefined) clearTimeout(this.summaryTimer);
    this.summarize();
  }

  private record(r: Rejection): void {
    if (r.kind === "connection") {
      this.options.logger.warn({ reason: r.reason, peer: r.peer }, "connection refused");
      return;
    }
    this.options.audit.record({
      principal: "unknown",
      ...r.identity,
      operation: r.operation ?? "reject",
      ...(r.method === undefined ? {} : { method: r.method }),
      outcome: r.outcome,
      ...(r.peer === undefined ? {} : { peer: r.peer }),
    });
    // Auth failures have always had their audit record alone; edge limits also tell the operator's log.
    if (r.operation !== "authenticate") this.options.logger.warn({ kind: r.kind, reason: r.reason, method: r.method, peer: r.peer }, "request refused");
  }

  private summarize(): void {
    this.summaryTimer = undefined;
    if (this.suppressed.size === 0) return;
    const counts = Object.fromEntries(this.suppressed);
    this.suppressed.clear();
    this.options.logger.warn({ suppressed: counts }, "refusals beyond REJECT_AUDIT_RATE, counted only");
  }
}
