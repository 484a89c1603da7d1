/**
 * Connection caps on a real server (src/server/connection-limits.ts): over the
 * per-address cap a connection is closed at accept; at the total cap a
 * newcomer takes the place of the longest-idle connection, and is refused
 * only when every connection is busy.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import * as net from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { App } from "../src/app.js";
import { grpcFrame, PREFACE_AND_SETTINGS } from "./support/attack.js";
import { startTestApp } from "./support/server.js";

/** An idle HTTP/2 connection (preface and SETTINGS, then nothing) from `localAddress`; `closed` resolves when the server closes it. */
async function idleConnection(url: string, localAddress = "127.0.0.1"): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect({ host: hostname, port: Number(port), localAddress });
  socket.on("error", () => {});
  socket.on("data", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  await once(socket, "connect");
  socket.write(PREFACE_AND_SETTINGS);
  return { socket, closed };
}

async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  return Promise.race([promise.then(() => true), sleep(ms, false)]);
}

describe("connection limits", () => {
  let app: App;
  before(async () => {
    app = await startTestApp({ env: { MAX_CONNECTIONS: "4", MAX_CONNECTIONS_PER_ADDRESS: "3", HTTP2_IDLE_TIMEOUT: "1h" } });
  });
  after(async () => {
    await app.close();
  });

  it("over the per-address cap a connection is closed at once; at the total cap the longest-idle one makes room", async () => {
    const a = await idleConnection(app.url, "127.0.0.2");
    await sleep(50);
    const b = await idleConnection(app.url, "127.0.0.2");
    const c = await idleConnection(app.url, "127.0.0.2");
    const overAddress = await idleConnection(app.url, "127.0.0.2");
    assert.equal(await settledWithin(overAddress.closed, 5000), true, "the 4th from one address is closed");
    const d = await idleConnection(app.url, "127.0.0.3");
    // The total (4) is reached: a probe on a new connection is still answered, and the oldest idle connection went.
    const probe = await fetch(`${app.url}/healthz`);
    assert.equal(probe.status, 200);
    assert.equal(await settledWithin(a.closed, 5000), true, "the longest-idle connection was closed");
    assert.equal(await settledWithin(d.closed, 200), false, "a younger one was not");
    for (const x of [a, b, c, d, overAddress]) x.socket.destroy();
  });

  it("when every connection is busy (a stream open on each), a newcomer is refused", async () => {
    // Let the previous test's connections go first.
    await sleep(200);
    const sessions: http2.ClientHttp2Session[] = [];
    try {
      for (let i = 0; i < 4; i++) {
        const session = http2.connect(app.url, { localAddress: `127.0.0.${10 + i}` } as http2.SecureClientSessionOptions);
        session.on("error", () => {});
        sessions.push(session);
        await once(session, "connect");
        const stream = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Watch", "content-type": "application/grpc", te: "trailers" });
        stream.on("error", () => {});
        stream.end(grpcFrame(new Uint8Array(0)));
        await once(stream, "response");
      }
      const newcomer = await idleConnection(app.url, "127.0.0.20");
      assert.equal(await settledWithin(newcomer.closed, 5000), true, "refused: nothing idle to make room");
      for (const session of sessions) assert.equal(session.closed || session.destroyed, false, "the busy connections stay");
    } finally {
      for (const session of sessions) session.destroy();
    }
  });
});
