/**
 * Wire-cost anchors for the benchmark: bare servers of
 * grpc.health.v1.Health/Check on h2c, one process each, answering SERVING.
 *
 *   node --import tsx bench/anchors/servers.ts grpcjs PORT    # bare @grpc/grpc-js server
 *   node --import tsx bench/anchors/servers.ts connect PORT   # bare @connectrpc/connect-node
 *   node --import tsx bench/anchors/servers.ts grpcjs-redis PORT REDIS_URL
 *
 * grpcjs-redis: a bare @grpc/grpc-js server of the two session calls the
 * targets name, each one ioredis call per request (auto-pipelined), no
 * validation, encryption, caps, logs or audit: the floor of a Redis-backed
 * call on this machine, next to which sessiond's shows what its own work costs.
 * - session.v1.SessionService/CreateSession: a Lua function that writes the
 *   least a session a user can read, list, watch and lose to expiry needs (a
 *   hash with its expiry, a member of the user's sorted set, an event on a
 *   capped stream).
 * - session.v1.SessionService/GetSession: HGETALL of one session's hash, whose
 *   stored answer (about a GetSessionResponse's size) is sent back as it is.
 *
 * Prints "ready" once listening. From /work/shared/anchors/wire (servers.ts).
 */
import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
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
} else if (kind === "grpcjs-redis") {
  const redis = new Redis(process.argv[4] ?? "", { enableAutoPipelining: true });
  await redis.function(
    "LOAD",
    "REPLACE",
    `#!lua name=bench_floor
redis.register_function('bench_floor_create', function(keys, args)
  redis.call('HSET', keys[1], 'u', args[1], 'm', args[2])
  redis.call('PEXPIRE', keys[1], args[3])
  redis.call('ZADD', 'floor:u:' .. args[1], 0, keys[1])
  redis.call('XADD', 'floor:events', 'MAXLEN', '~', '10000', '*', 's', keys[1])
  return 1
end)`,
  );
  const bytes = (b: Buffer): Buffer => b;
  const method = (name: string): grpc.MethodDefinition<Buffer, Buffer> => ({
    path: `/session.v1.SessionService/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: bytes,
    requestDeserialize: bytes,
    responseSerialize: bytes,
    responseDeserialize: bytes,
  });
  await redis.hset("floor:s:get", "u", "bench-get", "r", Buffer.alloc(160, 1));
  // About the size of a CreateSessionResponse; the request's bytes are stored as the metadata.
  const reply = Buffer.alloc(100, 1);
  const server = new grpc.Server();
  const unavailable = (error: unknown): Partial<grpc.StatusObject> => ({ code: grpc.status.UNAVAILABLE, details: error instanceof Error ? error.message : "redis" });
  const handleCreate: grpc.handleUnaryCall<Buffer, Buffer> = (call, callback) => {
    const id = randomUUID();
    redis.fcall("bench_floor_create", 1, `floor:s:${id}`, "bench-user", call.request, "3600000").then(
      () => callback(null, reply),
      (error: unknown) => callback(unavailable(error)),
    );
  };
  const handleGet: grpc.handleUnaryCall<Buffer, Buffer> = (_call, callback) => {
    redis.hgetallBuffer("floor:s:get").then(
      (hash) => callback(null, hash["r"] ?? Buffer.alloc(0)),
      (error: unknown) => callback(unavailable(error)),
    );
  };
  server.addService({ CreateSession: method("CreateSession"), GetSession: method("GetSession") }, { CreateSession: handleCreate, GetSession: handleGet });
  server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
    if (error !== null) throw error;
    console.log("ready");
  });
} else {
  throw new Error(`unknown anchor ${String(kind)}: grpcjs, connect or grpcjs-redis`);
}
process.on("SIGINT", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
