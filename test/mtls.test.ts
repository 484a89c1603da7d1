/**
 * Mutual TLS (TLS_CLIENT_CA_FILE, MTLS_PRINCIPALS_FILE) against a real server,
 * with certificates openssl makes for the test: a CA, a server certificate,
 * a client certificate from that CA, and one from another CA.
 *
 * The server requests a client certificate but does not refuse the handshake
 * without a verified one (see single-port-server.ts): such a call reaches the
 * auth interceptor with no principal and fails with UNAUTHENTICATED, which the
 * client can read and the audit log records.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { SessionService } from "../gen/session/v1/session_pb.js";
import type { App } from "../src/app.js";
import { AccessLevel } from "@sessiond/client";
import { startTestApp } from "./support/server.js";
import { tempDir } from "./support/auth.js";

let dir: string;
let app: App;
const file = (name: string): string => join(dir, name);

function openssl(args: readonly string[]): void {
  execFileSync("openssl", args, { stdio: "ignore" });
}

/** A self-signed CA: <name>.key, <name>.pem. */
function makeCa(name: string): void {
  openssl(["req", "-x509", "-nodes", "-days", "1", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-keyout", file(`${name}.key`), "-out", file(`${name}.pem`), "-subj", `/CN=${name}`]);
}

/** A leaf certificate <name>.pem signed by the CA `ca`, with the subject and extensions given. */
function makeLeaf(name: string, ca: string, subject: string, extensions: string): void {
  openssl(["req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`), "-subj", subject]);
  writeFileSync(file(`${name}.ext`), extensions);
  openssl(["x509", "-req", "-days", "1", "-in", file(`${name}.csr`), "-CA", file(`${ca}.pem`), "-CAkey", file(`${ca}.key`),
    "-CAcreateserial", "-out", file(`${name}.pem`), "-extfile", file(`${name}.ext`)]);
}

before(async () => {
  dir = tempDir();
  makeCa("ca");
  makeCa("other-ca");
  makeLeaf("server", "ca", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  makeLeaf("billing", "ca", "/O=acme/CN=billing-api", "extendedKeyUsage=clientAuth\n");
  makeLeaf("unlisted", "ca", "/CN=nobody", "extendedKeyUsage=clientAuth\n");
  makeLeaf("intruder", "other-ca", "/CN=billing-api", "extendedKeyUsage=clientAuth\n");
  writeFileSync(file("principals.json"), JSON.stringify([{ cn: "billing-api", tenant: "acme", scopes: ["read", "write"] }]));
  app = await startTestApp({
    env: {
      TLS_CERT_FILE: file("server.pem"),
      TLS_KEY_FILE: file("server.key"),
      TLS_CLIENT_CA_FILE: file("ca.pem"),
      MTLS_PRINCIPALS_FILE: file("principals.json"),
    },
  });
});

after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A gRPC client over TLS that trusts the test CA and presents the client certificate `name` (none if undefined). */
function client(name: string | undefined) {
  const ca = readFileSync(file("ca.pem"));
  const identity = name === undefined ? {} : { cert: readFileSync(file(`${name}.pem`)), key: readFileSync(file(`${name}.key`)) };
  return createClient(SessionService, createGrpcTransport({ baseUrl: app.url, nodeOptions: { ca, ...identity } }));
}

const CREATE = { userId: "alice", dataSource: "warehouse", accessLevel: AccessLevel.WRITE, ttl: { seconds: 60n } };

async function codeOf(call: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call;
    return "ok";
  } catch (error) {
    return ConnectError.from(error).code;
  }
}

describe("mutual TLS", () => {
  it("a client certificate from the configured CA authenticates as its mapped principal, in its tenant and scopes", async () => {
    const billing = client("billing");
    const { session } = await billing.createSession(CREATE);
    assert.equal(session?.userId, "alice");
    // The principal's tenant is acme: the session is in acme's store, invisible to the default tenant.
    const inAcme = await app.store.get("acme", session?.sessionId ?? "", { touch: false, includeEnded: false });
    assert.equal(inAcme.sessionId, session?.sessionId);
    await assert.rejects(app.store.get("default", session?.sessionId ?? "", { touch: false, includeEnded: false }), /not found/);
    assert.equal((await billing.getSessionMetrics({})).activeSessions, 1n);
    // Scopes read and write only: watch is denied.
    const watch = billing.watchSessions({});
    assert.equal(await codeOf((async () => { for await (const _ of watch) break; })()), Code.PermissionDenied);
  });

  it("no certificate, a certificate from another CA, or an unlisted subject: UNAUTHENTICATED (the handshake itself succeeds)", async () => {
    assert.equal(await codeOf(client(undefined).createSession(CREATE)), Code.Unauthenticated);
    assert.equal(await codeOf(client("intruder").createSession(CREATE)), Code.Unauthenticated);
    assert.equal(await codeOf(client("unlisted").createSession(CREATE)), Code.Unauthenticated);
  });
});
