/**
 * Two independent ways to call SessionService with the same requests, for
 * tests that must hold on every wire: the Connect protocol's JSON over
 * HTTP/1.1 with plain fetch (no RPC library; server streams framed by hand),
 * and gRPC over h2c with @grpc/grpc-js (the .proto loaded at run time by
 * @grpc/proto-loader). Requests are written in proto3 JSON form (what curl
 * sends) and converted for grpc-js; replies come back in the same shape, with
 * the status as a snake_case code name ("ok", "not_found", ...).
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** Credentials of one call: the authorization header and, for delegation, the acting user. */
export interface Credentials {
  readonly authorization: string;
  readonly actAs?: string;
}

export type Json = Readonly<Record<string, unknown>>;

export interface WireReply {
  /** "ok" or the status code name in snake case. */
  readonly code: string;
  readonly message: string;
  readonly body: Json;
}

/** One message of a watch, as the tests read it. */
export interface WatchMessage {
  readonly type: string;
  readonly sessionId: string;
  readonly userId: string;
  readonly cursor: string;
}

export interface WatchOutcome {
  /** Every message but heartbeats. */
  readonly events: WatchMessage[];
  /** "ok" when the test stopped the watch, else the status the stream ended with. */
  readonly code: string;
}

export interface WireClient {
  readonly name: string;
  unary(method: string, request: Json, credentials: Credentials): Promise<WireReply>;
  /** Watches until `done` says so for a message (heartbeats included) or the stream ends. */
  watch(request: Json, credentials: Credentials, done: (message: WatchMessage) => boolean, timeoutMs?: number): Promise<WatchOutcome>;
  close(): void;
}

export const ACT_AS = "sessiond-act-as";
const SERVICE = "session.v1.SessionService";

function headersOf(credentials: Credentials): Record<string, string> {
  return { authorization: credentials.authorization, ...(credentials.actAs === undefined ? {} : { [ACT_AS]: credentials.actAs }) };
}

function watchMessage(event: Json | undefined): WatchMessage {
  const session = (event?.["session"] ?? {}) as Json;
  return {
    type: String(event?.["type"] ?? ""),
    sessionId: String(session["sessionId"] ?? ""),
    userId: String(session["userId"] ?? ""),
    cursor: String(event?.["cursor"] ?? ""),
  };
}

// ---------------------------------------------------------------- Connect JSON over HTTP/1.1

/** The Connect protocol with JSON, over Node's fetch (HTTP/1.1). */
export function connectJsonClient(baseUrl: string): WireClient {
  return {
    name: "Connect JSON over HTTP/1.1",
    async unary(method, request, credentials) {
      const res = await fetch(`${baseUrl}/${SERVICE}/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headersOf(credentials) },
        body: JSON.stringify(request),
      });
      const body = (await res.json()) as Json;
      if (res.status === 200) return { code: "ok", message: "", body };
      return { code: String(body["code"]), message: String(body["message"] ?? ""), body };
    },
    async watch(request, credentials, done, timeoutMs = 20_000) {
      const controller = new AbortController();
      let timedOut = false;
      let stopped = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, timeoutMs);
      const events: WatchMessage[] = [];
      try {
        const payload = Buffer.from(JSON.stringify(request));
        const envelope = Buffer.alloc(5 + payload.length);
        envelope.writeUInt32BE(payload.length, 1);
        payload.copy(envelope, 5);
        const res = await fetch(`${baseUrl}/${SERVICE}/WatchSessions`, {
          method: "POST",
          headers: { "content-type": "application/connect+json", "connect-protocol-version": "1", ...headersOf(credentials) },
          body: envelope,
          signal: controller.signal,
        });
        if (res.status !== 200) {
          const body = (await res.json()) as Json;
          return { events, code: String(body["code"]) };
        }
        assert.ok(res.body !== null);
        let buffered = Buffer.alloc(0);
        for await (const chunk of res.body) {
          buffered = Buffer.concat([buffered, Buffer.from(chunk)]);
          while (buffered.length >= 5) {
            const length = buffered.readUInt32BE(1);
            if (buffered.length < 5 + length) break;
            const flags = buffered.readUInt8(0);
            const message = JSON.parse(buffered.subarray(5, 5 + length).toString("utf8")) as Json;
            buffered = buffered.subarray(5 + length);
            if ((flags & 0x02) !== 0) {
              // End of stream: an error, or none for a normal end.
              const error = message["error"] as Json | undefined;
              return { events, code: error === undefined ? "ok" : String(error["code"]) };
            }
            const item = watchMessage(message["event"] as Json | undefined);
            if (item.type !== "EVENT_TYPE_HEARTBEAT") events.push(item);
            if (done(item)) {
              stopped = true;
              break;
            }
          }
          if (stopped) {
            controller.abort();
            break;
          }
        }
        return { events, code: "ok" };
      } catch (error) {
        if (stopped) return { events, code: "ok" };
        if (timedOut) return { events, code: "deadline_exceeded" };
        throw error;
      } finally {
        clearTimeout(timer);
      }
    },
    close() {},
  };
}

// ---------------------------------------------------------------- gRPC with @grpc/grpc-js

function loadService(): grpc.ServiceClientConstructor {
  const definition = protoLoader.loadSync("session/v1/session.proto", {
    includeDirs: [fileURLToPath(new URL("../../proto", import.meta.url))],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition);
  const service = ((loaded["session"] as grpc.GrpcObject)["v1"] as grpc.GrpcObject)["SessionService"];
  return service as grpc.ServiceClientConstructor;
}

/** proto3 JSON of the few well-known types the tests send, in protobufjs object form. */
function toGrpcRequest(request: Json): Json {
  const out: Record<string, unknown> = { ...request };
  const ttl = request["ttl"];
  if (typeof ttl === "string") out["ttl"] = { seconds: Number(ttl.replace(/s$/, "")), nanos: 0 };
  const metadata = request["metadata"];
  if (typeof metadata === "object" && metadata !== null) {
    out["metadata"] = { fields: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, { stringValue: String(v) }])) };
  }
  const value = request["value"];
  if (typeof value === "string") out["value"] = { stringValue: value };
  return out;
}

function codeName(code: number): string {
  return (grpc.status[code] ?? `code_${code}`).toLowerCase();
}

function metadataOf(credentials: Credentials): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(headersOf(credentials))) metadata.set(key, value);
  return metadata;
}

/** gRPC over h2c with @grpc/grpc-js. */
export function grpcJsClient(address: string): WireClient {
  const Service = loadService();
  const client = new Service(address, grpc.credentials.createInsecure());
  const definition = (method: string): grpc.MethodDefinition<object, Json> => {
    const found = Service.service[method];
    assert.ok(found !== undefined, `method ${method} exists`);
    return found as unknown as grpc.MethodDefinition<object, Json>;
  };
  return {
    name: "gRPC with @grpc/grpc-js",
    unary(method, request, credentials) {
      const d = definition(method);
      return new Promise((resolve) => {
        client.makeUnaryRequest<object, Json>(d.path, d.requestSerialize, d.responseDeserialize, toGrpcRequest(request), metadataOf(credentials), {}, (error, response) => {
          if (error !== null) resolve({ code: codeName(error.code), message: error.details, body: {} });
          else resolve({ code: "ok", message: "", body: response ?? {} });
        });
      });
    },
    watch(request, credentials, done, timeoutMs = 20_000) {
      const d = definition("WatchSessions");
      return new Promise((resolve) => {
        const events: WatchMessage[] = [];
        let settled = false;
        const finish = (code: string): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ events, code });
        };
        const call = client.makeServerStreamRequest<object, Json>(d.path, d.requestSerialize, d.responseDeserialize, toGrpcRequest(request), metadataOf(credentials), {});
        const timer = setTimeout(() => {
          finish("deadline_exceeded");
          call.cancel();
        }, timeoutMs);
        call.on("data", (response: Json) => {
          const item = watchMessage(response["event"] as Json | undefined);
          if (item.type !== "EVENT_TYPE_HEARTBEAT") events.push(item);
          if (done(item)) {
            finish("ok");
            call.cancel();
          }
        });
        call.on("error", (error: grpc.ServiceError) => finish(codeName(error.code)));
        call.on("end", () => finish("ok"));
      });
    },
    close() {
      client.close();
    },
  };
}
