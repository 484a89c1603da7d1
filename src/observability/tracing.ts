/**
 * OpenTelemetry tracing, with the official SDK (@opentelemetry/sdk-trace-node).
 *
 * Off unless an OTLP endpoint is configured (OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): then spans go out over OTLP/HTTP
 * (protobuf) in batches, and the other standard OTEL_* variables apply as the
 * SDK reads them (headers, timeout, sampler, resource attributes, batch sizes).
 * Off, no provider is registered: @opentelemetry/api's calls are no-ops and
 * nothing is exported or kept.
 *
 * The provider is registered globally (tracer provider, AsyncLocalStorage
 * context manager, W3C trace-context propagator), because that is how code
 * that only knows @opentelemetry/api (the Redis script runner) finds the
 * active span: a span started inside an RPC's context becomes its child.
 * Tests pass their own exporter (an InMemorySpanExporter).
 */
import { context, INVALID_SPAN_CONTEXT, propagation, ROOT_CONTEXT, SpanKind, trace, type Context, type Span, type TextMapGetter, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-node";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";

/** The instrumentation scope of every span this service makes. */
export const TRACER_NAME = "sessiond";

export interface TracingOptions {
  /** Where spans go: the OTLP endpoint's URL decides whether tracing is on (see otlpEndpointConfigured). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly serviceVersion?: string;
  /** Export to this instead of OTLP, span by span (tests: an InMemorySpanExporter). Turns tracing on. */
  readonly exporter?: SpanExporter;
}

export interface Tracing {
  /** Exports what is buffered and stops the provider (call at shutdown). */
  shutdown(): Promise<void>;
}

/** True when the standard variables name an OTLP endpoint for traces and OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER do not turn it off. */
export function otlpEndpointConfigured(env: Readonly<Record<string, string | undefined>>): boolean {
  if (env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true") return false;
  if (env["OTEL_TRACES_EXPORTER"]?.trim().toLowerCase() === "none") return false;
  return Boolean(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]?.trim() || env["OTEL_EXPORTER_OTLP_ENDPOINT"]?.trim());
}

/**
 * Whether this process registered a tracer provider. Without one every span is
 * a no-op and the caller's context is the root context (no propagator either),
 * so an RPC takes the shared non-recording span instead of building one.
 */
let registered = false;

/** Whether spans are recorded at all (a tracer provider is registered). */
export function tracingRegistered(): boolean {
  return registered;
}

/** The span and context of every RPC while tracing is off: nothing to record, nothing to propagate. */
const UNTRACED: { readonly span: Span; readonly context: Context } = { span: trace.wrapSpanContext(INVALID_SPAN_CONTEXT), context: ROOT_CONTEXT };

/** Registers the tracer provider when tracing is configured; undefined (and nothing registered) when it is not. */
export function startTracing(options: TracingOptions = {}): Tracing | undefined {
  const env = options.env ?? process.env;
  if (options.exporter === undefined && !otlpEndpointConfigured(env)) return undefined;
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (envDetector) win over the built-in name.
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: "sessiond", ...(options.serviceVersion === undefined ? {} : { [ATTR_SERVICE_VERSION]: options.serviceVersion }) }))
    .merge(detectResources({ detectors: [envDetector] }));
  const processor = options.exporter === undefined ? new BatchSpanProcessor(new OTLPTraceExporter()) : new SimpleSpanProcessor(options.exporter);
  const provider = new NodeTracerProvider({ resource, spanProcessors: [processor] });
  provider.register();
  registered = true;
  return {
    async shutdown() {
      await provider.shutdown();
    },
  };
}

export function tracer(): Tracer {
  return trace.getTracer(TRACER_NAME);
}

/** Reads propagation headers (traceparent, tracestate, baggage) from a fetch-style Headers object. */
const HEADERS_GETTER: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};

/** The caller's context from its W3C headers (the root context when it sent none or tracing is off). */
export function callerContext(headers: Headers): Context {
  return propagation.extract(ROOT_CONTEXT, headers, HEADERS_GETTER);
}

/** Starts the server span of one RPC as a child of the caller's context; returns it with the context to run the call in. */
export function startRpcSpan(service: string, method: string, headers: Headers): { span: Span; context: Context } {
  if (!registered) return UNTRACED;
  const parent = callerContext(headers);
  const span = tracer().startSpan(
    `${service}/${method}`,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs fn in ctx (so spans started inside become children). */
export function withContext<T>(ctx: Context, fn: () => T): T {
  if (!registered) return fn();
  return context.with(ctx, fn);
}
