/**
 * TLS on the one port: with TLS_CERT_FILE and TLS_KEY_FILE, ALPN offers h2
 * (gRPC, Connect over HTTP/2) and http/1.1 (Connect JSON, /healthz), with a
 * self-signed certificate that openssl makes for the test.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import * as http2 from "node:http2";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "../gen/session/v1/session_pb.js";
import type { App } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config/config.js";
import { startTestApp } from "./support/server.js";
import { makeSelfSignedCertificate } from "./support/tls.js";

let dir: string;
let certFile: string;
let keyFile: string;
let ca: Buffer;
let app: App;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "sessiond-tls-"));
  ({ certFile, keyFile } = makeSelfSignedCertificate(dir));
  ca = await readFile(certFile);
  app = await startTestApp({ env: { TLS_CERT_FILE: certFile, TLS_KEY_FILE: keyFile } });
});

after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One HTTPS request over HTTP/1.1; resolves with the status, body and the negotiated protocol. */
function request1(path: string, method = "GET", body?: string): Promise<{ status: number; body: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${app.url}${path}`,
      // https.request passes TLS options such as ALPNProtocols through to tls.connect.
      { method, ca, ALPNProtocols: ["http/1.1"], headers: body === undefined ? {} : { "content-type": "application/json" } } as https.RequestOptions,
      (res) => {
        const alpn = (res.socket as TLSSocket).alpnProtocol;
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, alpn }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

describe("TLS", { timeout: 20_000 }, () => {
  it("serves https on the one port", () => {
    assert.match(app.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it("negotiates http/1.1 by ALPN for /healthz and Connect JSON", async () => {
    const health = await request1("/healthz");
    assert.deepEqual(health, { status: 200, body: "ok\n", alpn: "http/1.1" });
    const created = await request1("/session.v1.SessionService/CreateSession", "POST", JSON.stringify({ userId: "tls", dataSource: "h1" }));
    assert.equal(created.status, 200, created.body);
    assert.equal((JSON.parse(created.body) as { session: { userId: string } }).session.userId, "tls");
  });

  it("negotiates h2 by ALPN, and gRPC works over it", async () => {
    const session = http2.connect(app.url, { ca });
    try {
      await new Promise<void>((resolve, reject) => {
        session.once("connect", () => resolve());
        session.once("error", reject);
      });
      assert.equal(session.alpnProtocol, "h2");
      const status = await new Promise<number>((resolve, reject) => {
        const req = session.request({ ":path": "/readyz" });
        req.on("response", (headers) => resolve(Number(headers[":status"])));
        req.on("error", reject);
        req.resume();
      });
      assert.equal(status, 200);
    } finally {
      session.close();
    }
    const client = createClient(SessionService, createGrpcTransport({ baseUrl: app.url, nodeOptions: { ca } }));
    const { session: created } = await client.createSession({ userId: "tls", dataSource: "grpc" });
    assert.equal(created?.dataSource, "grpc");
  });

  it("does not speak plaintext on a TLS port", async () => {
    await assert.rejects(fetch(app.url.replace("https:", "http:") + "/healthz"));
  });

  it("needs both files: one without the other is a configuration error naming them", () => {
    assert.throws(() => loadConfig({ TLS_CERT_FILE: certFile }), (e: unknown) => e instanceof ConfigError && /TLS_CERT_FILE and TLS_KEY_FILE/.test(e.message));
    assert.throws(() => loadConfig({ TLS_KEY_FILE: keyFile }), (e: unknown) => e instanceof ConfigError && /TLS_KEY_FILE/.test(e.message));
  });

  it("fails the start, naming the setting, when a file cannot be read", async () => {
    await assert.rejects(
      startTestApp({ env: { TLS_CERT_FILE: join(dir, "missing.pem"), TLS_KEY_FILE: keyFile } }),
      /TLS_CERT_FILE=".*missing\.pem" cannot be read \(ENOENT\)/,
    );
  });
});
