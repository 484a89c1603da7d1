/**
 * The one-port HTTP/1.1 + h2c server at the connection level: protocol
 * sniffing on awkward first reads, connections that never say anything, and
 * graceful close. A plain request handler stands in for Connect here; the API
 * tests cover Connect on top.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { classifyPreface, HTTP2_PREFACE } from "../src/server/preface.js";
import { createSinglePortServer, type RequestHandler, type SinglePortServer } from "../src/server/single-port-server.js";
import { createLogger } from "../src/logging/logger.js";

const logger = createLogger({ level: "silent" });

/** Answers "<protocol> <path>" after the path's number of milliseconds ("/150" waits 150 ms; "/hang" never answers). */
const handler: RequestHandler = (req, res) => {
  const path = req.url ?? "/";
  if (path === "/hang") return;
  const delay = Number(path.slice(1)) || 0;
  setTimeout(() => res.end(`${req.httpVersion} ${path}`), delay);
};

async function start(
  options: { prefaceTimeoutMs?: number; drainTimeoutMs?: number; http1Options?: http.ServerOptions; onRefused?: (reason: string) => void } = {},
): Promise<{ server: SinglePortServer; port: number }> {
  const server = createSinglePortServer({ handler, logger, ...options });
  const address = await server.listen(0, "127.0.0.1");
  return { server, port: address.port };
}

/** Writes the chunks with a pause between each, then collects everything until the server closes. */
async function rawExchange(port: number, chunks: readonly (string | Buffer)[], end = false): Promise<string> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((resolve) => socket.once("connect", resolve));
  let received = "";
  socket.setEncoding("latin1").on("data", (chunk: string) => (received += chunk));
  const closed = new Promise((resolve) => socket.once("close", resolve));
  socket.on("error", () => {});
  for (const chunk of chunks) {
    socket.write(chunk);
    await sleep(15);
  }
  if (end) socket.end();
  await closed;
  return received;
}

function http1Get(port: number, path: string, agent?: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

function http2Get(session: http2.ClientHttp2Session, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":path": path });
    let body = "";
    stream.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
    stream.on("end", () => resolve(body));
    stream.on("error", reject);
    stream.end();
  });
}

/**
 * A TCP proxy to the server that forwards the first `bytes` bytes the client
 * sends one at a time, so the server's first reads are shorter than the
 * preface. (http2 clients write through the native handle, so patching
 * socket.write cannot do this.)
 */
async function dribblingProxy(targetPort: number, bytes: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(targetPort, "127.0.0.1");
    upstream.setNoDelay(true);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.once("close", () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    let forwarded = 0;
    let queue = Promise.resolve();
    client.on("data", (chunk: Buffer) => {
      queue = queue.then(async () => {
        let rest = chunk;
        while (forwarded < bytes && rest.length > 0) {
          upstream.write(rest.subarray(0, 1));
          rest = rest.subarray(1);
          forwarded++;
          await sleep(2);
        }
        if (rest.length > 0) upstream.write(rest);
      });
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const address = proxy.address() as net.AddressInfo;
  return {
    port: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    },
  };
}

describe("classifyPreface", () => {
  test("decides on the first differing byte, or on the full preface", () => {
    assert.equal(classifyPreface(Buffer.alloc(0)), "undecided");
    assert.equal(classifyPreface(Buffer.from("P")), "undecided");
    assert.equal(classifyPreface(Buffer.from("PO")), "http1");
    assert.equal(classifyPreface(Buffer.from("GET / HTTP/1.1\r\n")), "http1");
    assert.equal(classifyPreface(HTTP2_PREFACE.subarray(0, 23)), "undecided");
    assert.equal(classifyPreface(HTTP2_PREFACE), "http2");
    assert.equal(classifyPreface(Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 4])])), "http2");
    assert.equal(classifyPreface(Buffer.from("PRI * HTTP/1.1\r\n")), "http1");
  });
});

describe("single-port server", () => {
  test("HTTP/1.1 and h2c on the same port", async () => {
    const { server, port } = await start();
    try {
      assert.equal(await http1Get(port, "/a"), "1.1 /a");
      const session = http2.connect(`http://127.0.0.1:${port}`);
      try {
        assert.equal(await http2Get(session, "/b"), "2.0 /b");
      } finally {
        session.close();
      }
    } finally {
      await server.close();
    }
  });

  test("awkward first reads: a preface one byte at a time, an HTTP/1 request split after 'P'", async () => {
    const { server, port } = await start();
    try {
      const proxy = await dribblingProxy(port, HTTP2_PREFACE.length + 9);
      const session = http2.connect(`http://127.0.0.1:${proxy.port}`);
      try {
        assert.equal(await http2Get(session, "/dribbled"), "2.0 /dribbled");
      } finally {
        session.close();
        await proxy.close();
      }

      const request = "POST /split HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      const reply = await rawExchange(port, ["P", request.slice(1)]);
      assert.match(reply, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(reply.endsWith("1.1 /split"));
    } finally {
      await server.close();
    }
  });

  test("connections that close early, send garbage, or stay silent do not disturb the server, and the refusals are reported", async () => {
    const refused: string[] = [];
    const { server, port } = await start({ prefaceTimeoutMs: 200, onRefused: (reason) => refused.push(reason) });
    try {
      // Closes without a byte.
      assert.equal(await rawExchange(port, [], true), "");
      // Half a preface, then closes.
      assert.equal(await rawExchange(port, [HTTP2_PREFACE.subarray(0, 10)], true), "");
      // Not HTTP at all: the HTTP/1 server answers 400 and closes.
      assert.match(await rawExchange(port, ["\x00\x01\x02 hello\r\n\r\n"]), /^HTTP\/1\.1 400 /);
      // Silent: closed by the server once the preface timeout passes.
      assert.equal(await rawExchange(port, []), "");
      // Half a preface and then silence: closed too.
      assert.equal(await rawExchange(port, [HTTP2_PREFACE.subarray(0, 20)]), "");
      assert.equal(await http1Get(port, "/still-serving"), "1.1 /still-serving");
      assert.deepEqual(refused.sort(), ["http1_bad_request", "preface_timeout", "preface_timeout"]);
    } finally {
      await server.close();
    }
  });

  test("HTTP/1 headers sent too slowly (slowloris) are cut off by Node's headersTimeout", { timeout: 20_000 }, async () => {
    const { server, port } = await start({ http1Options: { headersTimeout: 300, requestTimeout: 600, connectionsCheckingInterval: 50 } });
    try {
      const socket = net.connect(port, "127.0.0.1");
      socket.on("error", () => {});
      let received = "";
      socket.setEncoding("latin1").on("data", (chunk: string) => (received += chunk));
      const closed = new Promise((resolve) => socket.once("close", resolve));
      socket.write("GET /slow HTTP/1.1\r\n");
      const trickle = setInterval(() => socket.write("X-Slow: 1\r\n"), 50);
      await closed;
      clearInterval(trickle);
      assert.match(received, /^HTTP\/1\.1 408 /);
    } finally {
      await server.close();
    }
  });

  test("close() lets in-flight requests finish, closes idle keep-alive connections, and refuses new ones", { timeout: 20_000 }, async () => {
    const { server, port } = await start({ drainTimeoutMs: 60_000 });
    const agent = new http.Agent({ keepAlive: true });
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", () => {});
    try {
      // An idle keep-alive HTTP/1 connection and an idle HTTP/2 session...
      assert.equal(await http1Get(port, "/warm", agent), "1.1 /warm");
      assert.equal(await http2Get(session, "/warm"), "2.0 /warm");
      // ...and a request in flight on each protocol.
      const slow1 = http1Get(port, "/300");
      const slow2 = http2Get(session, "/300");
      await sleep(50);
      const closing = server.close();
      await assert.rejects(http1Get(port, "/late"), /ECONNREFUSED/);
      assert.equal(await slow1, "1.1 /300");
      assert.equal(await slow2, "2.0 /300");
      // Resolves (well before the 60 s drain timeout) once every connection, idle ones included, is closed.
      await closing;
    } finally {
      agent.destroy();
      session.destroy();
    }
  });

  test("close() destroys connections still busy after the drain timeout", { timeout: 20_000 }, async () => {
    const { server, port } = await start({ drainTimeoutMs: 200 });
    const hung = http1Get(port, "/hang");
    await sleep(50);
    await server.close();
    await assert.rejects(hung, /socket hang up|ECONNRESET/);
  });
});
