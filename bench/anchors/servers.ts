// Three unary servers for grpc.health.v1.Health/Check on h2c: connect-node, grpc-js, raw node:http2.
import * as http2 from "node:http2";
import { create, toBinary, fromBinary } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { Health, HealthCheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";

const kind = process.argv[2]; const port = Number(process.argv[3]);
const resp = create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING });
if (kind === "connect") {
  const h = connectNodeAdapter({ routes: (r) => r.service(Health, { check: () => resp, async *watch() {}, list: () => ({}) } as any) });
  http2.createServer(h).listen(port, "127.0.0.1", () => console.log("ready"));
} else if (kind === "grpcjs") {
  const s = new grpc.Server();
  s.addService({ Check: { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false,
    requestSerialize: (m: any) => Buffer.from(toBinary(HealthCheckRequestSchema, m)),
    requestDeserialize: (b: Buffer) => fromBinary(HealthCheckRequestSchema, b),
    responseSerialize: (m: any) => Buffer.from(toBinary(HealthCheckResponseSchema, m)),
    responseDeserialize: (b: Buffer) => fromBinary(HealthCheckResponseSchema, b) } } as any,
    { Check: (_c: any, cb: any) => cb(null, resp) });
  s.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), () => console.log("ready"));
} else if (kind === "raw") {
  const srv = http2.createServer();
  srv.on("stream", (st, hdr) => {
    const chunks: Buffer[] = [];
    st.on("data", (c: Buffer) => chunks.push(c));
    st.on("end", () => {
      const b = Buffer.concat(chunks);
      fromBinary(HealthCheckRequestSchema, b.subarray(5));
      const out = toBinary(HealthCheckResponseSchema, resp);
      const f = Buffer.alloc(5 + out.length); f.writeUInt32BE(out.length, 1); f.set(out, 5);
      st.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      st.on("wantTrailers", () => st.sendTrailers({ "grpc-status": "0" }));
      st.end(f);
    });
  });
  srv.listen(port, "127.0.0.1", () => console.log("ready"));
}
process.on("SIGINT", () => process.exit(0));
