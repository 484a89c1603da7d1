/**
 * Plain HTTP endpoints for operators and orchestrators, on the RPC port and
 * routed before the Connect adapter:
 *
 * - GET /healthz: liveness. 200 whenever the process can answer at all; it
 *   never looks at Redis, so an outage of Redis does not make Kubernetes
 *   restart every replica (which would not bring Redis back).
 * - GET /readyz: readiness. 200 while the store is reachable and the server
 *   is not shutting down, 503 (with the reason) otherwise, so load balancers
 *   stop sending traffic to this replica.
 * - GET /metrics: Prometheus exposition text; with `authorizeMetrics`
 *   (AUTH_PROTECT_OPS=true and authentication configured) only for a bearer
 *   credential with scope `metrics` or `admin`: 401 without a valid one, 403
 *   without the scope. /healthz and /readyz stay open: kubelet and load
 *   balancer probes carry no credentials, and they reveal nothing but up/down.
 *
 * They answer HTTP/1.1 and HTTP/2 alike (curl, kubelet httpGet probes,
 * Prometheus). HEAD is answered like GET without a body; other methods get 405.
 */
import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { RequestHandler } from "./single-port-server.js";

export interface HttpEndpointsOptions {
  /** Why the server is not ready ("store unreachable", "shutting down"), or undefined when it is. */
  readonly notReadyReason: () => string | undefined;
  /** The Prometheus exposition. */
  readonly metrics: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /** Called when producing /metrics fails (a collector threw); the response is a 500 either way. */
  readonly onError?: (error: unknown) => void;
  /** When given, decides whether a /metrics request may be answered (see the module comment). */
  readonly authorizeMetrics?: (request: Request) => Promise<MetricsAccess>;
}

/** The answer of authorizeMetrics. */
export type MetricsAccess = "ok" | "unauthenticated" | "permission_denied";

export type Request = http.IncomingMessage | http2.Http2ServerRequest;

/** What both response classes share and these endpoints use. */
interface PlainResponse {
  writeHead(statusCode: number, headers: Record<string, string | number>): unknown;
  end(chunk?: string): unknown;
}

const TEXT = "text/plain; charset=utf-8";

/**
 * Wraps `next` (the Connect adapter) so that the three paths are answered
 * here and every other request goes on to `next` untouched.
 */
export function withHttpEndpoints(next: RequestHandler, options: HttpEndpointsOptions): RequestHandler {
  return (req, res) => {
    const path = pathOf(req.url);
    if (path !== "/healthz" && path !== "/readyz" && path !== "/metrics") {
      next(req, res);
      return;
    }
    const out = res as PlainResponse;
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      send(out, 405, TEXT, "method not allowed\n", head, { allow: "GET, HEAD" });
      return;
    }
    if (path === "/healthz") {
      send(out, 200, TEXT, "ok\n", head);
      return;
    }
    if (path === "/readyz") {
      const reason = options.notReadyReason();
      if (reason === undefined) send(out, 200, TEXT, "ready\n", head);
      else send(out, 503, TEXT, `not ready: ${reason}\n`, head);
      return;
    }
    const authorize = options.authorizeMetrics?.(req) ?? Promise.resolve<MetricsAccess>("ok");
    authorize
      .then(async (access) => {
        if (access === "unauthenticated") {
          send(out, 401, TEXT, "unauthenticated\n", head, { "www-authenticate": "Bearer" });
          return;
        }
        if (access === "permission_denied") {
          send(out, 403, TEXT, "permission denied\n", head);
          return;
        }
        const { contentType, body } = await options.metrics();
        send(out, 200, contentType, body, head);
      })
      .catch((error: unknown) => {
        options.onError?.(error);
        send(out, 500, TEXT, "metrics unavailable\n", head);
      });
  };
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return "";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

function send(res: PlainResponse, status: number, contentType: string, body: string, head: boolean, extra: Record<string, string> = {}): void {
  res.writeHead(status, {
    "content-type": contentType,
    "content-length": Buffer.byteLength(body),
    // Probes and scrapes must see the current state, never a cached one.
    "cache-control": "no-store",
    ...extra,
  });
  res.end(head ? undefined : body);
}
