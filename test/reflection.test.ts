/**
 * gRPC server reflection (v1 and v1alpha) against the real app over h2c, with
 * clients that are not the server's code: grpc-js-reflection-client (what a
 * tool without .proto files does: list, resolve types from the served
 * descriptors alone, call), and @grpc/grpc-js with the reflection .proto
 * loaded at run time for the raw protocol (several requests on one stream,
 * dependencies, NOT_FOUND answers).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { GrpcReflection } from "grpc-js-reflection-client";
import { SessionService } from "../gen/session/v1/session_pb.js";
import type { App } from "../src/app.js";
import { startTestApp } from "./support/server.js";

const VERSIONS = ["v1", "v1alpha"] as const;
type Version = (typeof VERSIONS)[number];

const SERVED = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
  "session.v1.SessionService",
];

let app: App;
let target: string;

before(async () => {
  app = await startTestApp();
  target = `127.0.0.1:${app.port}`;
});

after(async () => {
  await app.close();
});

for (const version of VERSIONS) {
  describe(`grpc.reflection.${version} through grpc-js-reflection-client`, () => {
    let reflection: GrpcReflection;
    before(() => {
      reflection = new GrpcReflection(target, grpc.credentials.createInsecure(), {}, version);
    });

    it("lists every served service, the reflection services included", async () => {
      assert.deepEqual((await reflection.listServices()).sort(), SERVED);
    });

    it("describes session.v1.SessionService: its methods and their types", async () => {
      const root = (await reflection.getDescriptorBySymbol("session.v1.SessionService")).getProtobufJsRoot();
      const service = root.lookupService("session.v1.SessionService");
      const create = service.methods["CreateSession"];
      assert.ok(create !== undefined);
      create.resolve();
      assert.equal(create.resolvedRequestType?.fullName, ".session.v1.CreateSessionRequest");
      assert.equal(create.resolvedResponseType?.fullName, ".session.v1.CreateSessionResponse");
      const watch = service.methods["WatchSessions"];
      assert.ok(watch !== undefined);
      assert.equal(watch.responseStream, true);
      // Every RPC the .proto declares, nothing else.
      assert.deepEqual(Object.keys(service.methods).sort(), SessionService.methods.map((m) => m.name).sort());
    });

    it("describes session.v1.CreateSessionRequest down to the google/protobuf types it uses", async () => {
      const root = (await reflection.getDescriptorBySymbol("session.v1.CreateSessionRequest")).getProtobufJsRoot();
      const type = root.lookupType("session.v1.CreateSessionRequest");
      type.resolveAll();
      // protobufjs names fields by their JSON names when it builds types from descriptors.
      assert.deepEqual(Object.keys(type.fields).sort(), ["accessLevel", "dataSource", "metadata", "requestId", "ttl", "userId"]);
      assert.equal(type.fields["userId"]?.type, "string");
      assert.equal(type.fields["userId"]?.id, 1);
      assert.equal(type.fields["ttl"]?.resolvedType?.fullName, ".google.protobuf.Duration");
      assert.equal(type.fields["metadata"]?.resolvedType?.fullName, ".google.protobuf.Struct");
      assert.equal(type.fields["accessLevel"]?.resolvedType?.fullName, ".session.v1.AccessLevel");
    });

    it("calls CreateSession, GetSession and WatchSessions with the served descriptors alone", async () => {
      const descriptor = await reflection.getDescriptorBySymbol("session.v1.SessionService");
      const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
      const client = newSessionClient(pkg, target);
      try {
        const created = await unary(client, "CreateSession", {
          user_id: "alice",
          data_source: "warehouse",
          access_level: "ACCESS_LEVEL_WRITE",
          ttl: { seconds: 300 },
          // protobufjs builds a map field from a descriptor as the repeated entry messages that are its wire form.
          metadata: { fields: [{ key: "ip", value: { string_value: "10.0.0.7" } }] },
        });
        const session = created["session"] as Record<string, unknown>;
        assert.equal(created["created"], true);
        assert.equal(session["user_id"], "alice");
        assert.equal(session["access_level"], "ACCESS_LEVEL_WRITE");
        const id = session["session_id"];
        assert.equal(typeof id, "string");

        const got = await unary(client, "GetSession", { session_id: id });
        assert.equal((got["session"] as Record<string, unknown>)["session_id"], id);

        // A server stream: the snapshot names the session.
        const stream = client["WatchSessions"] as (req: object) => grpc.ClientReadableStream<Record<string, unknown>>;
        const call = stream.call(client, { session_ids: [id], send_initial_snapshot: true });
        const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
          call.once("data", resolve);
          call.once("error", reject);
        });
        call.cancel();
        call.on("error", () => {}); // the cancellation itself
        const event = first["event"] as Record<string, unknown>;
        assert.equal((event["session"] as Record<string, unknown>)["session_id"], id);
      } finally {
        client.close();
      }
    });
  });

  describe(`grpc.reflection.${version}, raw protocol through @grpc/grpc-js`, () => {
    it("answers several requests on one stream, with each file's dependencies sent once", async () => {
      const answers = await ask(version, [
        { file_containing_symbol: "session.v1.SessionService.CreateSession" },
        { file_by_filename: "google/protobuf/duration.proto" },
        { file_containing_symbol: "session.v1.SessionService" },
      ]);
      const first = files(answers[0]);
      assert.equal(first[0]?.name, "session/v1/session.proto", "the requested file comes first");
      assert.deepEqual(first.slice(1).map((f) => f.name).sort(), [
        "google/protobuf/duration.proto",
        "google/protobuf/struct.proto",
        "google/protobuf/timestamp.proto",
      ]);
      assert.deepEqual(first[0]?.dependency, ["google/protobuf/duration.proto", "google/protobuf/struct.proto", "google/protobuf/timestamp.proto"]);
      // Already sent on this stream as a dependency, but asked for by name: sent again, alone.
      assert.deepEqual(files(answers[1]).map((f) => f.name), ["google/protobuf/duration.proto"]);
      // Asked again: the file itself, without repeating its dependencies.
      assert.deepEqual(files(answers[2]).map((f) => f.name), ["session/v1/session.proto"]);
      assert.deepEqual((answers[1]?.["original_request"] as Record<string, unknown>)["file_by_filename"], "google/protobuf/duration.proto");
    });

    it("resolves methods, nested messages, fields, enums and enum values to their file", async () => {
      const symbols: Record<string, string> = {
        "session.v1.SessionService.WatchSessions": "session/v1/session.proto",
        "session.v1.ListSessionDataResponse.ValuesEntry": "session/v1/session.proto",
        "session.v1.CreateSessionRequest.ttl": "session/v1/session.proto",
        "session.v1.AccessLevel": "session/v1/session.proto",
        "session.v1.ACCESS_LEVEL_READ": "session/v1/session.proto",
        "grpc.health.v1.HealthCheckResponse.ServingStatus": "grpc/health/v1/health.proto",
        "grpc.health.v1.HealthCheckResponse.SERVING": "grpc/health/v1/health.proto",
        "grpc.health.v1.Health.Watch": "grpc/health/v1/health.proto",
        "grpc.reflection.v1alpha.ServerReflection": "grpc/reflection/v1alpha/reflection.proto",
        "grpc.reflection.v1.ServerReflectionRequest": "grpc/reflection/v1/reflection.proto",
        "google.protobuf.Struct.FieldsEntry": "google/protobuf/struct.proto",
      };
      const answers = await ask(
        version,
        Object.keys(symbols).map((symbol) => ({ file_containing_symbol: symbol })),
      );
      Object.values(symbols).forEach((file, i) => assert.equal(files(answers[i])[0]?.name, file, Object.keys(symbols)[i]));
    });

    it("answers unknown symbols, files and types with NOT_FOUND and keeps the stream open", async () => {
      const answers = await ask(version, [
        { file_containing_symbol: "no.such.Symbol" },
        { file_containing_symbol: "session.v1.SessionService.NoSuchMethod" },
        { file_by_filename: "no/such/file.proto" },
        { all_extension_numbers_of_type: "no.such.Message" },
        { file_containing_extension: { containing_type: "session.v1.Session", extension_number: 1000 } },
        { list_services: "*" },
      ]);
      for (const answer of answers.slice(0, 5)) {
        const error = answer["error_response"] as Record<string, unknown> | undefined;
        assert.ok(error !== undefined, `an error_response, got ${JSON.stringify(answer["message_response"])}`);
        assert.equal(error["error_code"], grpc.status.NOT_FOUND);
        assert.ok(String(error["error_message"]).length > 0);
      }
      const services = (answers[5]?.["list_services_response"] as { service: { name: string }[] }).service.map((s) => s.name);
      assert.deepEqual(services.sort(), SERVED);
    });

    it("lists the extension numbers of a known message (none here)", async () => {
      const [answer] = await ask(version, [{ all_extension_numbers_of_type: "session.v1.Session" }]);
      const numbers = answer?.["all_extension_numbers_response"] as Record<string, unknown>;
      assert.equal(numbers["base_type_name"], "session.v1.Session");
      assert.deepEqual(numbers["extension_number"] ?? [], []);
    });
  });
}

type Answer = Record<string, unknown>;

/** The FileDescriptorProtos of a file_descriptor_response, decoded with protobuf-es. */
function files(answer: Answer | undefined): FileDescriptorProto[] {
  const response = answer?.["file_descriptor_response"] as { file_descriptor_proto: Buffer[] } | undefined;
  assert.ok(response !== undefined, `a file_descriptor_response, got ${JSON.stringify(answer?.["error_response"])}`);
  return response.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

const reflectionProtos: Partial<Record<Version, grpc.ServiceClientConstructor>> = {};

/** The ServerReflection client class of a version, from the reflection .proto loaded at run time. */
function reflectionClientClass(version: Version): grpc.ServiceClientConstructor {
  const cached = reflectionProtos[version];
  if (cached !== undefined) return cached;
  const definition = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, {
    includeDirs: ["proto"],
    keepCase: true,
    oneofs: true,
    longs: String,
    enums: String,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const ns = ((loaded["grpc"] as grpc.GrpcObject)["reflection"] as grpc.GrpcObject)[version] as grpc.GrpcObject;
  const ctor = ns["ServerReflection"] as grpc.ServiceClientConstructor;
  reflectionProtos[version] = ctor;
  return ctor;
}

/** Sends the requests on ONE reflection stream, one at a time, and returns the answers in order. */
async function ask(version: Version, requests: readonly object[]): Promise<Answer[]> {
  const Client = reflectionClientClass(version);
  const client = new Client(target, grpc.credentials.createInsecure());
  try {
    const info = client["ServerReflectionInfo"] as () => grpc.ClientDuplexStream<object, Answer>;
    const call = info.call(client);
    const answers: Answer[] = [];
    const iterator = call[Symbol.asyncIterator]() as AsyncIterator<Answer>;
    for (const request of requests) {
      call.write(request);
      const next = await iterator.next();
      assert.equal(next.done, false, "the stream ended early");
      answers.push(next.value);
    }
    call.end();
    assert.equal((await iterator.next()).done, true);
    return answers;
  } finally {
    client.close();
  }
}

/** A SessionService client from the package object built out of reflected descriptors. */
function newSessionClient(pkg: grpc.GrpcObject, address: string): grpc.Client & Record<string, unknown> {
  const ns = (pkg["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject;
  const Ctor = ns["SessionService"] as grpc.ServiceClientConstructor;
  return new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, unknown>;
}

function unary(client: grpc.Client & Record<string, unknown>, method: string, request: object): Promise<Record<string, unknown>> {
  const fn = client[method] as (req: object, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;
  return new Promise((resolve, reject) => fn.call(client, request, (err, res) => (err === null ? resolve(res) : reject(err))));
}
