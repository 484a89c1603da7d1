/**
 * The fast gRPC unary path (src/server/grpc-unary) through the real RPC
 * server, with standard gRPC clients: @grpc/grpc-js and grpcio (Debian's
 * python3-grpcio), plus a raw node:http2 client where the wire itself is the
 * point. A test service (grpc.health.v1.Health, implemented here) fails,
 * echoes metadata, waits for its signal, so that errors with details and
 * metadata, deadlines, cancellation, compression and size limits are each
 * observable. Connect, gRPC-Web and Connect over HTTP/1.1 still answer on the
 * same port.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import * as http from "node:http";
import * as http2 from "node:http2";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createContextValues, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus,
} from "../gen/grpc/health/v1/health_pb.js";
import { loadConfig } from "../src/config/config.js";
import { createDeadlineInterceptor } from "../src/limits/deadline-interceptor.js";
import { createLogger } from "../src/logging/logger.js";
import { startRpcServer, type RpcServer } from "../src/server/rpc-server.js";

/** Every character the old encoding mangled for grpc-js (":" and ","), "%", and non-ASCII. */
const MESSAGE = "precondition: a, b, 100% – grüße ✓ 日本";
const SERVING = HealthCheckResponse_ServingStatus.SERVING;

/** What the test service saw, per call kind. */
const seen = { slowReasons: [] as unknown[], interceptorCalls: [] as string[] };

const recordCalls: Interceptor = (next) => async (req) => {
  seen.interceptorCalls.push(`${req.method.name}:${req.header.get("content-type") ?? ""}`);
  return next(req);
};

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

describe("fast gRPC unary path", () => {
  let server: RpcServer;
  let port: number;
  before(async () => {
    const config = loadConfig({ HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "silent", MAX_REQUEST_BYTES: "3000" });
    server = await startRpcServer({
      config,
      logger: createLogger({ level: "silent" }),
      interceptors: [recordCalls, createDeadlineInterceptor()],
      contextValues: () => createContextValues(),
      routes: (router) =>
        router.service(Health, {
          async check(req, ctx) {
            if (req.service === "fail") {
              throw new ConnectError(MESSAGE, Code.FailedPrecondition, { "x-fail-meta": "m1" }, [
                { desc: HealthCheckResponseSchema, value: { status: HealthCheckResponse_ServingStatus.NOT_SERVING } },
              ]);
            }
            if (req.service === "slow") {
              await waitForAbort(ctx.signal);
              seen.slowReasons.push(ctx.signal.reason);
              throw ConnectError.from(ctx.signal.reason);
            }
            if (req.service.startsWith("echo")) {
              ctx.responseHeader.set("x-echo", ctx.requestHeader.get("x-req") ?? "");
              ctx.responseTrailer.set("x-trailer", "t");
            }
            return { status: SERVING };
          },
          // eslint-disable-next-line require-yield
          async *watch(req) {
            if (req.service === "fail") throw new ConnectError(MESSAGE, Code.FailedPrecondition);
          },
        }),
    });
    port = server.port;
  });
  after(async () => {
    await server.close();
  });

  const checkDefinition = {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: (service: string) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service }))),
    requestDeserialize: (bytes: Buffer) => fromBinary(HealthCheckRequestSchema, bytes).service,
    responseSerialize: (status: number) => Buffer.from(toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status }))),
    responseDeserialize: (bytes: Buffer) => fromBinary(HealthCheckResponseSchema, bytes).status as number,
  };
  const watchDefinition = { ...checkDefinition, path: "/grpc.health.v1.Health/Watch", responseStream: true };
  const GrpcJsHealth = grpc.makeGenericClientConstructor({ Check: checkDefinition, Watch: watchDefinition }, "Health");

  function grpcJsClient(options: grpc.ClientOptions = {}): grpc.Client {
    return new GrpcJsHealth(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), options);
  }

  interface CheckResult {
    readonly error: grpc.ServiceError | null;
    readonly status?: number;
    readonly header?: grpc.Metadata;
    readonly trailer?: grpc.Metadata;
  }

  function grpcJsCheck(client: grpc.Client, service: string, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<CheckResult> & { call?: grpc.ClientUnaryCall } {
    let header: grpc.Metadata | undefined;
    let trailer: grpc.Metadata | undefined;
    let call: grpc.ClientUnaryCall | undefined;
    const promise = new Promise<CheckResult>((resolve) => {
      call = client.makeUnaryRequest(checkDefinition.path, checkDefinition.requestSerialize, checkDefinition.responseDeserialize, service, metadata, options, (error, status) =>
        // grpc-js emits "status" (with the trailers) right after this callback.
        setImmediate(() => resolve({ error, ...(status === undefined ? {} : { status }), ...(header === undefined ? {} : { header }), ...(trailer === undefined ? {} : { trailer }) })),
      );
      call.on("metadata", (m) => (header = m));
      call.on("status", (s) => (trailer = s.metadata));
    });
    return Object.assign(promise, { call });
  }

  test("grpc-js: an error reaches the caller byte for byte, with its metadata and grpc-status-details-bin", async () => {
    const client = grpcJsClient();
    try {
      const { error } = await grpcJsCheck(client, "fail");
      assert.ok(error !== null);
      assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(error.details, MESSAGE);
      assert.deepEqual(error.metadata.get("x-fail-meta"), ["m1"]);
      const details = error.metadata.get("grpc-status-details-bin")[0];
      assert.ok(Buffer.isBuffer(details), "grpc-status-details-bin is present");
      // google.rpc.Status: the message and the detail's type URL are in the encoded bytes.
      assert.ok(details.includes(Buffer.from(MESSAGE)), "Status.message");
      assert.ok(details.includes(Buffer.from("type.googleapis.com/grpc.health.v1.HealthCheckResponse")), "Status.details[0].type_url");
    } finally {
      client.close();
    }
  });

  test("grpc-js: a streaming method's error (answered by connect) reaches the caller byte for byte too", async () => {
    const client = grpcJsClient();
    try {
      const stream = client.makeServerStreamRequest(watchDefinition.path, watchDefinition.requestSerialize, watchDefinition.responseDeserialize, "fail");
      const error = await new Promise<grpc.ServiceError>((resolve) => {
        stream.on("data", () => {});
        stream.on("error", resolve);
      });
      assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
      assert.equal(error.details, MESSAGE);
    } finally {
      client.close();
    }
  });

  test("grpc-js: request metadata reaches the handler, response headers and trailers reach the caller, through the shared interceptors", async () => {
    const client = grpcJsClient();
    try {
      const before = seen.interceptorCalls.length;
      const metadata = new grpc.Metadata();
      metadata.set("x-req", "from-grpc-js");
      const result = await grpcJsCheck(client, "echo", metadata);
      assert.equal(result.error, null);
      assert.equal(result.status, SERVING);
      assert.deepEqual(result.header?.get("x-echo"), ["from-grpc-js"]);
      assert.deepEqual(result.trailer?.get("x-trailer"), ["t"]);
      assert.deepEqual(seen.interceptorCalls.slice(before), ["Check:application/grpc"]);
    } finally {
      client.close();
    }
  });

  test("grpc-js: gzip requests are decompressed and a deadline ends the call with DEADLINE_EXCEEDED", async () => {
    const client = grpcJsClient({ "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip });
    try {
      const big = await grpcJsCheck(client, `echo${"x".repeat(2000)}`);
      assert.equal(big.error, null);
      assert.equal(big.status, SERVING);
      const slow = await grpcJsCheck(client, "slow", new grpc.Metadata(), { deadline: Date.now() + 300 });
      assert.equal(slow.error?.code, grpc.status.DEADLINE_EXCEEDED);
    } finally {
      client.close();
    }
  });

  test("grpc-js: a request over MAX_REQUEST_BYTES is refused with RESOURCE_EXHAUSTED", async () => {
    const client = grpcJsClient();
    try {
      const { error } = await grpcJsCheck(client, "y".repeat(4000));
      assert.equal(error?.code, grpc.status.RESOURCE_EXHAUSTED);
    } finally {
      client.close();
    }
  });

  test("grpc-js: cancelling a call aborts the handler's signal", async () => {
    const client = grpcJsClient();
    try {
      const count = seen.slowReasons.length;
      const pending = grpcJsCheck(client, "slow");
      await new Promise((resolve) => setTimeout(resolve, 200));
      pending.call?.cancel();
      const { error } = await pending;
      assert.equal(error?.code, grpc.status.CANCELLED);
      const deadline = Date.now() + 5000;
      while (seen.slowReasons.length === count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(ConnectError.from(seen.slowReasons.at(-1)).code, Code.Canceled);
    } finally {
      client.close();
    }
  });

  test("grpcio: errors byte for byte with details and metadata, metadata both ways, gzip, deadline, size limit", async () => {
    const script = fileURLToPath(new URL("./support/grpcio-client.py", import.meta.url));
    // Not spawnSync: the server under test runs on this process's event loop.
    const run = await promisify(execFile)("/usr/bin/python3", [script, String(port)], { encoding: "utf8", timeout: 60_000 });
    const results = JSON.parse(run.stdout) as Record<string, { ok?: boolean; code?: string; details?: string; trailers?: Record<string, string>; initial?: Record<string, string>; trailing?: Record<string, string>; status?: number }>;
    assert.equal(results["fail"]?.code, "FAILED_PRECONDITION");
    assert.equal(results["fail"]?.details, MESSAGE);
    assert.equal(results["fail"]?.trailers?.["x-fail-meta"], "m1");
    const details = Buffer.from(results["fail"]?.trailers?.["grpc-status-details-bin"] ?? "", "base64");
    assert.ok(details.includes(Buffer.from(MESSAGE)), "grpc-status-details-bin carries the message");
    assert.equal(results["watch_fail"]?.code, "FAILED_PRECONDITION");
    assert.equal(results["watch_fail"]?.details, MESSAGE);
    assert.equal(results["echo"]?.status, SERVING);
    assert.equal(results["echo"]?.initial?.["x-echo"], "from-grpcio");
    assert.equal(results["echo"]?.trailing?.["x-trailer"], "t");
    assert.equal(results["gzip"]?.ok, true);
    assert.equal(results["deadline"]?.code, "DEADLINE_EXCEEDED");
    assert.equal(results["too_big"]?.code, "RESOURCE_EXHAUSTED");
  });

  test("wire: a unary error is one trailers-only HEADERS frame with the spec's grpc-message encoding", async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const call = (service: string, headers: http2.OutgoingHttpHeaders): Promise<{ headers: http2.IncomingHttpHeaders; trailers?: http2.IncomingHttpHeaders; body: Buffer }> =>
        new Promise((resolve, reject) => {
          const message = toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, { service }));
          const frame = Buffer.alloc(5 + message.length);
          frame.writeUInt32BE(message.length, 1);
          frame.set(message, 5);
          const stream = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers", ...headers });
          let responseHeaders: http2.IncomingHttpHeaders = {};
          let trailers: http2.IncomingHttpHeaders | undefined;
          const chunks: Buffer[] = [];
          stream.on("response", (h) => (responseHeaders = h));
          stream.on("trailers", (t) => (trailers = t));
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => resolve({ headers: responseHeaders, ...(trailers === undefined ? {} : { trailers }), body: Buffer.concat(chunks) }));
          stream.on("error", reject);
          stream.end(frame);
        });
      const failed = await call("fail", {});
      assert.equal(failed.trailers, undefined, "trailers-only");
      assert.equal(failed.headers["grpc-status"], String(Code.FailedPrecondition));
      assert.equal(failed.headers["grpc-message"], "precondition: a, b, 100%25 %E2%80%93 gr%C3%BC%C3%9Fe %E2%9C%93 %E6%97%A5%E6%9C%AC");
    } finally {
      session.close();
    }
  });

  test("Connect (HTTP/1.1 and HTTP/2) and gRPC-Web still answer on the same port", async () => {
    const baseUrl = `http://127.0.0.1:${port}`;
    for (const transport of [
      createConnectTransport({ baseUrl, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl, httpVersion: "2" }),
      createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
      createGrpcWebTransport({ baseUrl, httpVersion: "2" }),
      createGrpcTransport({ baseUrl }),
    ]) {
      const client = createClient(Health, transport);
      assert.equal((await client.check({ service: "echo" })).status, SERVING);
      await assert.rejects(client.check({ service: "fail" }), (error: unknown) => {
        const e = ConnectError.from(error);
        return e.code === Code.FailedPrecondition && e.rawMessage === MESSAGE;
      });
    }
    const json = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${baseUrl}/grpc.health.v1.Health/Check`, { method: "POST", headers: { "content-type": "application/json" } }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (c: string) => (body += c)).on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end(JSON.stringify({ service: "echo" }));
    });
    assert.equal(json.status, 200);
    assert.deepEqual(JSON.parse(json.body), { status: "SERVING" });
  });
});
