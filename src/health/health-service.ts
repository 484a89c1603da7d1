/**
 * grpc.health.v1.Health on Connect, answered from a HealthMonitor's cached
 * status (never from a Redis call per request).
 *
 * Semantics follow https://github.com/grpc/grpc/blob/master/doc/health-checking.md:
 * Check of an unknown service is NOT_FOUND; Watch of an unknown service sends
 * SERVICE_UNKNOWN and stays open.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import type { HealthMonitor } from "./health-monitor.js";

/** Registers grpc.health.v1.Health, answered by the monitor. Pass to connectNodeAdapter's routes. */
export function healthServiceRoutes(monitor: HealthMonitor): (router: ConnectRouter) => void {
  return (router) => {
    router.service(Health, {
      check: (req) => check(monitor, req),
      watch: (req, ctx) => watch(monitor, req, ctx),
      list: () => list(monitor),
    });
  };
}

function check(monitor: HealthMonitor, req: HealthCheckRequest): HealthCheckResponse {
  const status = monitor.status(req.service);
  if (status === undefined) {
    throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
  }
  return create(HealthCheckResponseSchema, { status });
}

function list(monitor: HealthMonitor): HealthListResponse {
  const statuses: Record<string, HealthCheckResponse> = {};
  for (const [service, status] of monitor.statuses()) {
    statuses[service] = create(HealthCheckResponseSchema, { status });
  }
  return create(HealthListResponseSchema, { statuses });
}

/**
 * Sends the current status at once, then the status after each change. Changes
 * that arrive while the client is slow to read are coalesced into the latest
 * one (as grpc-go does), so a stalled stream holds no queue and HTTP/2 flow
 * control applies.
 */
async function* watch(monitor: HealthMonitor, req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
  const current = (): ServingStatus => monitor.status(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
  const ended = AbortSignal.any([ctx.signal, monitor.stopSignal]);
  let changed = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    changed = true;
    wake?.();
  };
  const unsubscribe = monitor.subscribe(notify);
  ended.addEventListener("abort", notify);
  try {
    let sent = current();
    yield create(HealthCheckResponseSchema, { status: sent });
    for (;;) {
      if (!changed && !ended.aborted) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
      wake = undefined;
      changed = false;
      // The client is gone: nothing more to say to it.
      if (ctx.signal.aborted) return;
      const status = current();
      if (status !== sent) {
        sent = status;
        yield create(HealthCheckResponseSchema, { status });
      }
      // The monitor stopped (server shutting down): its last word, NOT_SERVING, was just sent.
      if (monitor.stopSignal.aborted) return;
    }
  } finally {
    ended.removeEventListener("abort", notify);
    unsubscribe();
  }
}
