/**
 * The shared shutdown signal holds one "abort" listener however many calls are
 * in flight (a listener per call makes opening N streams cost O(N²)), and
 * shutdown still ends every stream with UNAVAILABLE.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { loadConfig } from "../src/config/config.js";
import { HealthMonitor } from "../src/health/health-monitor.js";
import { healthServiceRoutes } from "../src/health/health-service.js";
import { createLogger } from "../src/logging/logger.js";
import { startRpcServer } from "../src/server/rpc-server.js";
import { SHUTDOWN_MESSAGE } from "../src/server/shutdown-interceptor.js";
import { MemoryStore } from "../src/store/memory/memory-store.js";

const STREAMS = 3000;

describe("shutdown signal with thousands of streams in flight", () => {
  it(`holds one abort listener for ${STREAMS} Health/Watch streams, and shutdown ends them all with UNAVAILABLE`, { timeout: 180_000 }, async () => {
    const monitor = new HealthMonitor({ store: new MemoryStore({ limits: { maxDataKeys: 1, archiveRetentionMs: 1000, expiryGraceMs: 1000 } }), intervalMs: 1000 });
    await monitor.start();
    const server = await startRpcServer({
      routes: healthServiceRoutes(monitor),
      config: loadConfig({ HOST: "127.0.0.1", PORT: "0", HTTP2_MAX_CONCURRENT_STREAMS: String(STREAMS * 2) }),
      logger: createLogger({ level: "silent" }),
      // Long enough that the drain's connection close is not what ends the streams: the handlers must see the abort.
      drainTimeoutMs: 120_000,
    });
    try {
      const listeners = (): number => getEventListeners(server.shutdownSignal, "abort").length;
      assert.equal(listeners(), 0, "an idle server holds no listener");
      const health = createClient(Health, createGrpcTransport({ baseUrl: server.url }));
      const streams = Array.from({ length: STREAMS }, () => health.watch({ service: "" })[Symbol.asyncIterator]());
      // Each stream's first message: its handler is running, so its call is in flight.
      await Promise.all(streams.map((s) => s.next()));
      assert.equal(listeners(), 1);

      const endings = streams.map((s) => s.next().then((r) => (r.done ? "ended OK" : "another message"), (e: unknown) => e));
      await server.close();
      const results = await Promise.all(endings);
      const unavailable = results.filter((e) => e instanceof ConnectError && e.code === Code.Unavailable && e.rawMessage === SHUTDOWN_MESSAGE);
      assert.equal(unavailable.length, STREAMS, `not UNAVAILABLE: ${String(results.find((e) => !unavailable.includes(e)))}`);
      assert.equal(listeners(), 0);
    } finally {
      monitor.stop();
      await server.close();
    }
  });
});
