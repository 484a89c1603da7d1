/**
 * Wire-cost anchors for the benchmark: bare servers of
 * grpc.health.v1.Health/Check on h2c, one process each, answering SERVING.
 *
 *   node --import tsx bench/anchors/servers.ts grpcjs PORT    # bare @grpc/grpc-js server
 *   node --import tsx bench/anchors/servers.ts connect PORT   # bare @connectrpc/connect-node
 *
 * Prints "ready" once listening. From /work/shared/anchors/wire (servers.ts).
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";

const kind = process.argv[2];
const port = Number(process.argv[3]);
const response = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });

if (kind === "connect") {
  const handler = connectNodeAdapter({
    routes: (router) => router.service(Health, { check: () => response, async *watch() {}, list: () => ({}) }),
  });
  http2.createServer(handler).listen(port, "127.0.0.1", () => console.log("ready"));
} else if (kind === "grpcjs") {
  const server = new grpc.Server();
  const check: grpc.MethodDefinition<HealthCheckRequest, HealthCheckResponse> = {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: (m) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
    requestDeserialize: (b) => fromBinary(HealthCheckRequestSchema, b),
    responseSerialize: (m) => Buffer.from(toBinary(HealthCheckResponseSchema, m)),
    responseDeserialize: (b) => fromBinary(HealthCheckResponseSchema, b),
  };
  const handle: grpc.handleUnaryCall<HealthCheckRequest, HealthCheckResponse> = (_call, callback) => callback(null, response);
  server.addService({ Check: check }, { Check: handle });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
    if (error !== null) throw error;
    console.log("ready");
  });
} else {
  throw new Error(`unknown anchor ${String(kind)}: grpcjs or connect`);
}
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
