/**
 * The attack suite: a real sessiond process (API keys configured, small limits
 * so that every attack stays bounded), attacked over loopback the way a
 * caller without credentials would. Each attack asserts the status codes the
 * attacker gets, that an authenticated call made during the attack still
 * succeeds, that the process's memory returns within a bound afterwards, and
 * that the refusals are counted (sessiond_rejected_total).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import * as http2 from "node:http2";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { ServerReflectionRequestSchema } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { SessionService, WatchSessionsRequestSchema } from "../gen/session/v1/session_pb.js";
import { Code, ConnectError, type SessionClient } from "@sessiond/client";
import { clientWith, tempDir, writeApiKeysFile, type TestKey } from "./support/auth.js";
import { grpcFrame, idleFlood, metricValue, rawGrpcCall, rssOf, streamFlood, trickleHttp2Body, PREFACE_AND_SETTINGS } from "./support/attack.js";
import { startSessiond, type SessiondProcess } from "./support/process.js";

const KEY: TestKey = { id: "owner", key: `k-${randomUUID()}`, tenant: "acme", scopes: ["read", "write", "watch"] };
const AUTH = { authorization: `Bearer ${KEY.key}` };

const LIMITS = {
  MAX_CONNECTIONS: "300",
  MAX_CONNECTIONS_PER_ADDRESS: "150",
  HTTP2_IDLE_TIMEOUT: "3s",
  HTTP2_MAX_CONCURRENT_STREAMS: "100",
  MAX_STREAMS_PER_CONNECTION: "40",
  MAX_STREAMS: "200",
  MAX_WATCHERS_PER_PRINCIPAL: "1000",
  MIN_REQUEST_BODY_RATE: "1024",
  REQUEST_TIMEOUT: "20s",
  REJECT_AUDIT_RATE: "10",
};
/** Growth of the service's RSS an attack may leave behind once it is over. */
const RSS_BOUND = 100 * 1024 * 1024;

const GET_SESSION = "/session.v1.SessionService/GetSession";

describe("attacks on a running server", () => {
  let p: SessiondProcess;
  let sessionId: string;
  let baselineRss: number;

  before(async () => {
    const dir = tempDir();
    p = await startSessiond({ env: { API_KEYS_FILE: writeApiKeysFile(dir, [KEY]), SHUTDOWN_DELAY: "0s", LOG_LEVEL: "info", ...LIMITS } });
    sessionId = await withClient(async (client) => {
      const id = (await client.createSession({ userId: "victim", dataSource: "d" })).session?.sessionId ?? "";
      for (let i = 0; i < 50; i++) await client.getSession({ sessionId: id });
      return id;
    });
    baselineRss = rssOf(p.child.pid ?? 0);
  });
  after(() => p?.kill());

  /**
   * An authenticated call succeeds. A REFUSED_STREAM (the request crossed the GOAWAY of an idle close, which the
   * short HTTP2_IDLE_TIMEOUT here makes frequent) is retried once: the server did not process it, and gRPC clients
   * such as grpc-js retry it by themselves; connect-node does not.
   */
  async function authenticatedCallSucceeds(): Promise<void> {
    const got = await withClient((client) =>
      client.getSession({ sessionId }).catch((error: unknown) => {
        if (error instanceof ConnectError && /REFUSED_STREAM/.test(error.message)) return client.getSession({ sessionId });
        throw error;
      }),
    );
    assert.equal(got.session?.sessionId, sessionId);
  }

  /**
   * Runs `use` with an authenticated client on a connection of its own, closed when it is done: no idle connection is
   * left for the server's short HTTP2_IDLE_TIMEOUT here to close, which connect-node's session manager can answer
   * with an uncaught "received GOAWAY without any open streams" (a client-side idle timer shorter than the server's
   * is not enough on a loaded machine, where the client's timer can fire late).
   */
  async function withClient<T>(use: (client: SessionClient) => Promise<T>): Promise<T> {
    const sessionManager = new Http2SessionManager(p.url);
    const client = createClient(
      SessionService,
      createGrpcTransport({
        baseUrl: p.url,
        sessionManager,
        defaultTimeoutMs: 10_000,
        interceptors: [
          (next) => async (req) => {
            req.header.set("authorization", AUTH.authorization);
            return next(req);
          },
        ],
      }),
    );
    try {
      return await use(client);
    } finally {
      sessionManager.abort();
    }
  }

  /** The process is alive and its RSS comes back within RSS_BOUND of the baseline. */
  async function memoryReturns(): Promise<void> {
    assert.equal(p.child.exitCode, null, "the process is alive");
    let rss = rssOf(p.child.pid ?? 0);
    for (let i = 0; i < 100 && rss > baselineRss + RSS_BOUND; i++) {
      await sleep(100);
      rss = rssOf(p.child.pid ?? 0);
    }
    assert.ok(rss <= baselineRss + RSS_BOUND, `RSS ${Math.round(rss / 2 ** 20)} MiB, baseline ${Math.round(baselineRss / 2 ** 20)} MiB`);
  }

  async function rejected(kind: string, reason: string): Promise<number> {
    return metricValue(p.url, `sessiond_rejected_total{kind="${kind}",reason="${reason}"}`);
  }

  it("idle-connection flood: connections beyond the per-address cap are closed at accept, beyond the total cap the idle ones make room, the admitted ones close when idle", { timeout: 60_000 }, async () => {
    await authenticatedCallSucceeds();
    const perAddressBefore = await rejected("connection", "max_connections_per_address");
    const fromOne = await idleFlood(p.url, 600, "127.0.0.2");
    const others = await Promise.all(["127.0.0.3", "127.0.0.4", "127.0.0.5"].map((address) => idleFlood(p.url, 100, address)));
    const floods = [fromOne, ...others];
    try {
      await authenticatedCallSucceeds();
      // A probe on a new connection is answered while the flood holds the total cap: an idle flood connection makes room.
      assert.equal((await fetch(`${p.url}/healthz`)).status, 200);
      // Refused at accept: 450 of one address's 600 at once, and some of the others' once the total is reached.
      for (let i = 0; i < 200 && fromOne.closed() < 450; i++) await sleep(50);
      assert.ok(fromOne.closed() >= 450, `${fromOne.closed()} of 600 closed`);
      const admitted = (): number => floods.reduce((n, f) => n + f.connected() - f.closed(), 0);
      for (let i = 0; i < 100 && admitted() > 300; i++) await sleep(20);
      assert.ok(admitted() <= 300, `${admitted()} flood connections held open`);
      // The admitted ones are closed by HTTP2_IDLE_TIMEOUT.
      const all = (): number => floods.reduce((n, f) => n + f.closed(), 0);
      for (let i = 0; i < 400 && all() < 900; i++) await sleep(50);
      assert.equal(all(), 900, "every flood connection was closed by the server");
      // The server has let go of them too.
      let open = Infinity;
      for (let i = 0; i < 100 && open > 2; i++) open = await metricValue(p.url, "sessiond_open_connections").catch(() => Infinity);
      assert.ok(open <= 2, `${open} connections open after the flood`);
      await authenticatedCallSucceeds();
    } finally {
      for (const flood of floods) flood.destroy();
    }
    assert.ok((await rejected("connection", "max_connections_per_address")) - perAddressBefore >= 450, "over the per-address cap: counted");
    // At the total cap a newcomer takes the place of the longest-idle connection (or is refused when none is idle).
    assert.ok((await rejected("connection", "evicted_idle")) + (await rejected("connection", "max_connections")) >= 1, "over the total cap: counted");
    assert.ok((await rejected("connection", "http2_idle")) >= 1, "idle ones: counted");
    await memoryReturns();
  });

  const healthWatch = { path: "/grpc.health.v1.Health/Watch", body: grpcFrame(new Uint8Array(0)), end: true };
  const reflection = {
    path: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    body: grpcFrame(toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } }))),
  };
  const watchSessions = { path: "/session.v1.SessionService/WatchSessions", body: grpcFrame(toBinary(WatchSessionsRequestSchema, create(WatchSessionsRequestSchema, { sendInitialSnapshot: true }))), end: true };

  for (const [name, target, headers] of [
    ["Health/Watch, unauthenticated", healthWatch, {}],
    ["reflection, unauthenticated", reflection, {}],
    ["WatchSessions, authenticated", watchSessions, AUTH],
  ] as const) {
    it(`stream flood on ${name}: at most MAX_STREAMS_PER_CONNECTION per connection and MAX_STREAMS in all stay open, the rest get RESOURCE_EXHAUSTED`, { timeout: 60_000 }, async () => {
      const flood = await streamFlood(p.url, { ...target, connections: 6, perConnection: 100, headers });
      try {
        assert.equal(await flood.settled(30_000), true, "every stream got an answer");
        assert.ok(flood.open() <= 200 && flood.open() >= 40, `${flood.open()} open`);
        assert.ok((flood.statuses().get(String(Code.ResourceExhausted)) ?? 0) >= 600 - 200, JSON.stringify([...flood.statuses()]));
        const streams = await metricValue(p.url, "sessiond_long_lived_streams");
        assert.ok(streams <= 200, `long-lived streams ${streams}`);
        await authenticatedCallSucceeds();
      } finally {
        await flood.close();
      }
      for (let i = 0; i < 100 && (await metricValue(p.url, "sessiond_long_lived_streams")) > 0; i++) await sleep(50);
      assert.equal(await metricValue(p.url, "sessiond_long_lived_streams"), 0, "every slot was freed");
      await memoryReturns();
    });
  }

  it("stream flood on WatchSessions without credentials: every stream refused, each one audited or counted in a summary line", { timeout: 60_000 }, async () => {
    const from = p.lines().length;
    const countedBefore = await rejected("request", "unauthenticated");
    const startedAt = Date.now();
    const flood = await streamFlood(p.url, { ...watchSessions, connections: 4, perConnection: 100 });
    let unauthenticatedSeen = 0;
    try {
      assert.equal(await flood.settled(30_000), true);
      assert.equal(flood.open(), 0);
      // Long-lived stream slots are counted before authentication: past MAX_STREAMS_PER_CONNECTION the refusal is RESOURCE_EXHAUSTED.
      const statuses = flood.statuses();
      unauthenticatedSeen = statuses.get(String(Code.Unauthenticated)) ?? 0;
      assert.ok(unauthenticatedSeen >= 40, JSON.stringify([...statuses]));
      assert.equal(unauthenticatedSeen + (statuses.get(String(Code.ResourceExhausted)) ?? 0), 400, JSON.stringify([...statuses]));
      await authenticatedCallSucceeds();
    } finally {
      await flood.close();
    }
    assert.equal((await rejected("request", "unauthenticated")) - countedBefore, unauthenticatedSeen, "every refusal is counted");
    // Each refusal: an audit record (REJECT_AUDIT_RATE=10/s, shared by every kind of refusal) or a count in a summary line.
    const accounted = (): { audited: number; summarized: number } => {
      const lines = p.lines().slice(from);
      const audited = lines.filter((l) => l["audit"] === true && l["outcome"] === "unauthenticated").length;
      const summarized = lines
        .filter((l) => l["msg"] === "refusals beyond REJECT_AUDIT_RATE, counted only")
        .reduce((n, l) => n + Number((l["suppressed"] as Record<string, number>)["request:unauthenticated"] ?? 0), 0);
      return { audited, summarized };
    };
    for (let i = 0; i < 100 && accounted().audited + accounted().summarized < unauthenticatedSeen; i++) await sleep(50);
    const { audited, summarized } = accounted();
    assert.equal(audited + summarized, unauthenticatedSeen);
    const seconds = Math.ceil((Date.now() - startedAt) / 1000) + 1;
    assert.ok(audited <= 10 * seconds, `${audited} audit records in ~${seconds} s`);
    await memoryReturns();
  });

  it("unauthenticated bodies are refused from the headers: the answer comes before the body is sent, and large ones cost no parse", { timeout: 60_000 }, async () => {
    // A frame header announcing 900 KB, and never the bytes: only a refusal from the headers can answer this.
    const announced = Buffer.from([0, 0, 0x0d, 0xbb, 0xa0]);
    const withoutBody = await new Promise<{ status: string }>((resolve, reject) => {
      void import("node:http2").then((http2) => {
        const session = http2.connect(p.url);
        session.on("error", reject);
        const stream = session.request({ ":method": "POST", ":path": GET_SESSION, "content-type": "application/grpc", te: "trailers" });
        stream.on("response", (h) => {
          resolve({ status: String(h["grpc-status"]) });
          session.destroy();
        });
        stream.on("error", () => {});
        stream.write(announced);
      });
    });
    assert.equal(withoutBody.status, String(Code.Unauthenticated));

    // 32 large unauthenticated JSON bodies at once: all refused, and an authenticated call meanwhile succeeds.
    const big = JSON.stringify({ sessionId: "x", key: "k", value: Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`f${i}`, "v".repeat(30)])) });
    const refusals = Array.from({ length: 32 }, async () => {
      const response = await fetch(`${p.url}/session.v1.SessionService/SetSessionData`, { method: "POST", headers: { "content-type": "application/json" }, body: big }).catch(
        (error: unknown) => ({ status: 0, error }),
      );
      return response.status;
    });
    await authenticatedCallSucceeds();
    const statuses = await Promise.all(refusals);
    // 401, or the connection closed by the server after answering while the body was still coming (HTTP/1).
    assert.ok(statuses.every((s) => s === 401 || s === 0), JSON.stringify(statuses));
    assert.ok(statuses.some((s) => s === 401));
    await memoryReturns();
  });

  it("slow body: an HTTP/1.1 body trickling a byte at a time loses its connection within a few rate windows", { timeout: 60_000 }, async () => {
    const { hostname, port } = new URL(p.url);
    const socket = net.connect(Number(port), hostname);
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
    let closed = false;
    socket.once("close", () => (closed = true));
    socket.write(`POST ${GET_SESSION} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: ${AUTH.authorization}\r\nContent-Length: 1000\r\n\r\n{`);
    const startedAt = Date.now();
    let sent = 1;
    while (!closed && Date.now() - startedAt < 20_000) {
      await sleep(500);
      if (!closed) socket.write(" ");
      sent += 1;
    }
    assert.equal(closed, true, "the server closed the connection");
    assert.ok(sent < 1000, `it did not wait for the whole body (${sent} bytes sent)`);
    assert.ok((await rejected("request", "slow_body")) >= 1);
    await authenticatedCallSucceeds();
  });

  for (const [name, headers, first] of [
    ["the fast gRPC path", { "content-type": "application/grpc", te: "trailers" }, Buffer.from([0, 0, 0, 0x03, 0xe8])],
    ["connect (Connect protocol, JSON)", { "content-type": "application/json" }, Buffer.from("{")],
  ] as const) {
    it(`slow body on HTTP/2, ${name}: a stream trickling a byte at a time is reset (ENHANCE_YOUR_CALM: RESOURCE_EXHAUSTED) within a few rate windows`, { timeout: 60_000 }, async () => {
      const before = await rejected("request", "slow_body");
      // Another stream on its own connection keeps being served meanwhile.
      const trickle = trickleHttp2Body(p.url, { path: GET_SESSION, headers: { ...headers, ...AUTH }, first, intervalMs: 500, maxMs: 15_000 });
      await authenticatedCallSucceeds();
      const { rstCode, sent, elapsedMs } = await trickle;
      assert.equal(rstCode, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, `reset with ENHANCE_YOUR_CALM (got ${rstCode} after ${elapsedMs} ms)`);
      // Long before REQUEST_TIMEOUT (20 s): the rate, not the whole-request bound, cut it.
      assert.ok(elapsedMs < 15_000, `cut after ${elapsedMs} ms, ${sent} bytes`);
      assert.ok((await rejected("request", "slow_body")) > before, "counted");
      await authenticatedCallSucceeds();
    });
  }

  it("bad bytes from an authenticated caller: INVALID_ARGUMENT with our message, no parser text, no echoed bytes", async () => {
    const garbage = await rawGrpcCall(p.url, GET_SESSION, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), AUTH);
    assert.equal(garbage.status, String(Code.InvalidArgument));
    assert.equal(garbage.message, "request: the body is not a valid protobuf encoding of session.v1.GetSessionRequest");

    const badUtf8 = await rawGrpcCall(p.url, GET_SESSION, Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0x41]), AUTH);
    assert.equal(badUtf8.status, String(Code.InvalidArgument));
    assert.equal(badUtf8.message, "request: a string field of session.v1.GetSessionRequest is not valid UTF-8");

    const json = async (path: string, body: string): Promise<{ status: number; code: string; message: string }> => {
      const response = await fetch(`${p.url}/session.v1.SessionService/${path}`, { method: "POST", headers: { "content-type": "application/json", ...AUTH }, body });
      const parsed = (await response.json()) as { code: string; message: string };
      return { status: response.status, code: parsed.code, message: parsed.message };
    };
    const deep = `{"sessionId":"${sessionId}","key":"k","value":${"[".repeat(150)}${"]".repeat(150)}}`;
    const nested = await json("SetSessionData", deep);
    assert.equal(nested.code, "invalid_argument");
    assert.equal(nested.message, "request: session.v1.SetSessionDataRequest nests messages deeper than 100 levels");

    const cut = await json("GetSession", `{"sessionId":"SECRET-${randomBytes(4).toString("hex")}`);
    assert.equal(cut.code, "invalid_argument");
    assert.equal(cut.message, "request: the body is not valid JSON for session.v1.GetSessionRequest");

    const wrongType = await json("CreateSession", `{"userId":"u","dataSource":"d","ttl":"SECRET-ttl"}`);
    assert.equal(wrongType.code, "invalid_argument");
    assert.equal(wrongType.message, "ttl: invalid value for this field");
    for (const r of [nested, cut, wrongType]) assert.doesNotMatch(r.message, /SECRET|\[\[|cannot decode|JSON\.parse|Unexpected/);

    assert.ok((await rejected("request", "malformed_body")) >= 5, "malformed bodies are counted");
    assert.ok(p.lines().some((l) => l["msg"] === "request refused" && l["reason"] === "malformed_body"), "and logged");
    await authenticatedCallSucceeds();
  });

  it("too large from an authenticated caller: RESOURCE_EXHAUSTED on both paths, counted as too_large", { timeout: 60_000 }, async () => {
    const before = await rejected("request", "too_large");
    // The fast gRPC path: a frame announcing 2 MiB (MAX_REQUEST_BYTES is 1 MiB) is refused from its 5-byte header.
    const grpc = await rawGrpcCall(p.url, GET_SESSION, new Uint8Array(0), AUTH, { prefix: Buffer.from([0, 0, 0x20, 0, 0]) });
    assert.equal(grpc.status, String(Code.ResourceExhausted));
    // connect (Connect protocol, JSON): a body over the bound.
    const response = await fetch(`${p.url}/session.v1.SessionService/GetSession`, {
      method: "POST",
      headers: { "content-type": "application/json", ...AUTH },
      body: JSON.stringify({ sessionId: "x".repeat(1_100_000) }),
    });
    assert.equal(((await response.json()) as { code: string }).code, "resource_exhausted");
    assert.ok((await rejected("request", "too_large")) >= before + 2, "both counted");
    await authenticatedCallSucceeds();
  });

  it("garbage frames and bytes: the connection is closed, counted, and the process serves on", async () => {
    const { hostname, port } = new URL(p.url);
    const http1Before = await rejected("connection", "http1_bad_request");
    for (const bytes of [Buffer.concat([PREFACE_AND_SETTINGS, randomBytes(4096)]), randomBytes(4096), Buffer.from("GET / HTTP/1.1\r\nHost: \x00\x01\r\n\r\n", "latin1")]) {
      const socket = net.connect(Number(port), hostname);
      socket.on("error", () => {});
      socket.on("data", () => {});
      await new Promise((resolve) => socket.once("connect", resolve));
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write(bytes);
      await Promise.race([closed, sleep(15_000)]);
      assert.equal(socket.destroyed, true, "the server closed the connection");
    }
    assert.ok((await rejected("connection", "http1_bad_request")) > http1Before, "HTTP/1 garbage: counted");
    await authenticatedCallSucceeds();
    assert.equal(p.child.exitCode, null);
  });

  it("an authenticated call with garbage is refused, and a call with a wrong key never reaches the parser", async () => {
    const wrongKey = await rawGrpcCall(p.url, GET_SESSION, Buffer.from([0xff, 0xff, 0xff]), { authorization: "Bearer nope" });
    assert.equal(wrongKey.status, String(Code.Unauthenticated));
    assert.equal(wrongKey.message, "unauthenticated");
    await assert.rejects(clientWith(p.url, undefined).getSession({ sessionId }), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated);
  });
});
