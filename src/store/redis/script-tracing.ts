/**
 * One client span per Redis script run inside a traced call, with
 * @opentelemetry/api only (no SDK here: without a registered provider these
 * calls do nothing). Background runs (the expiry scheduler's and the event
 * reader's polls) have no active span and get none, so they do not flood the
 * trace backend with root spans. Attributes name the script, never its keys
 * or arguments (session values).
 */
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { isSessionError } from "../../domain/errors.js";

const tracer = trace.getTracer("sessiond");

export function traceScript<T>(script: string, server: { host: string; port: number } | undefined, run: () => Promise<T>): Promise<T> {
  // Untraced, the usual case: the run's own promise, with no async frame around it.
  if (trace.getSpan(context.active()) === undefined) return run();
  return traced(script, server, run);
}

async function traced<T>(script: string, server: { host: string; port: number } | undefined, run: () => Promise<T>): Promise<T> {
  const span = tracer.startSpan(`FCALL ${script}`, {
    kind: SpanKind.CLIENT,
    attributes: {
      "db.system.name": "redis",
      "db.operation.name": "FCALL",
      "db.stored_procedure.name": script,
      ...(server === undefined ? {} : { "server.address": server.host, "server.port": server.port }),
    },
  });
  try {
    return await context.with(trace.setSpan(context.active(), span), run);
  } catch (error) {
    // The kind ("not_found", "unavailable") says enough; messages are not copied into the trace backend.
    // A script that answered "not_found" worked: only a failure to run it marks the span as failed.
    const kind = isSessionError(error) ? error.kind : error instanceof Error ? error.name : "unknown";
    span.setAttribute("error.type", kind);
    if (!isSessionError(error) || kind === "unavailable") span.setStatus({ code: SpanStatusCode.ERROR, message: kind });
    throw error;
  } finally {
    span.end();
  }
}
