/**
 * @sessiond/client as another project gets it: `npm pack` (which builds it),
 * the tarball and its peers installed into a fresh project outside the
 * repository, then, against a running server:
 * - plain `node` scripts, one ESM and one CommonJS, that create, get, list,
 *   set data and watch an expiry (and, from CommonJS, the grpc-js client and
 *   the exported .proto file);
 * - the READMEs' TypeScript snippets (package and root), type-checked with
 *   `tsc --strict` against the shipped .d.ts files only, compiled and run;
 * - @arethetypeswrong/cli on the tarball (ESM and CommonJS types resolve).
 * And the tarball holds the built client only: no sources, tests, benches or
 * server code, and no runtime dependency besides the peers.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { App } from "../src/app.js";
import { startTestApp } from "./support/server.js";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("..", import.meta.url));
const PACKAGE_DIR = join(REPO, "packages", "client");
const TSC = join(REPO, "node_modules", ".bin", "tsc");

/** The version the repository has installed, so the consumer gets the same peers (from npm's cache when it has them). */
function installedVersion(name: string): string {
  return (JSON.parse(readFileSync(join(REPO, "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
}

/** Runs a command; on failure the error names the command and carries its output. */
async function sh(file: string, args: readonly string[], cwd: string, env: Readonly<Record<string, string>> = {}): Promise<string> {
  try {
    const { stdout } = await run(file, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
    return stdout;
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(" ")} failed in ${cwd}:\n${stdout ?? ""}\n${stderr ?? ""}`, { cause: error });
  }
}

/** The ```ts blocks of a markdown file. */
function tsSnippets(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? "");
}

const ESM_SCRIPT = `
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { AccessLevel, createSessionClient, EventType, isNotFound, watchSessions } from "@sessiond/client";

// Resolved from this project's node_modules, never from the repository.
assert.match(createRequire(import.meta.url).resolve("@sessiond/client"), /node_modules\\/@sessiond\\/client\\/dist\\/cjs\\/index\\.js$/);
assert.match(import.meta.resolve("@sessiond/client"), /node_modules\\/@sessiond\\/client\\/dist\\/esm\\/index\\.js$/);

const client = createSessionClient(process.env.SESSIOND_URL);
const { session } = await client.createSession({ userId: "esm-user", dataSource: "warehouse", accessLevel: AccessLevel.WRITE, metadata: { via: "esm" } });
const got = await client.getSession({ sessionId: session.sessionId });
assert.equal(got.session.metadata.via, "esm");
const listed = await client.listSessions({ userId: "esm-user" });
assert.deepEqual(listed.sessions.map((s) => s.sessionId), [session.sessionId]);
await client.setSessionData({ sessionId: session.sessionId, key: "k", value: { kind: { case: "stringValue", value: "v" } } });
const data = await client.getSessionData({ sessionId: session.sessionId, key: "k" });
assert.equal(data.value.kind.value, "v");
await assert.rejects(client.getSession({ sessionId: crypto.randomUUID() }), (e) => isNotFound(e));

let expiring;
for await (const event of watchSessions(client, { userId: "esm-user", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true })) {
  if (event.type === EventType.HEARTBEAT && expiring === undefined) {
    ({ session: expiring } = await client.createSession({ userId: "esm-user", dataSource: "warehouse", ttl: { seconds: 1n } }));
  }
  if (event.type === EventType.EXPIRED && event.session.sessionId === expiring?.sessionId) break;
}
console.log("esm ok");
`;

const CJS_SCRIPT = `
const assert = require("node:assert/strict");
const { AccessLevel, createSessionClient, EventType, isNotFound, isPermissionDenied, watchSessions } = require("@sessiond/client");
const { createSessionGrpcClient, isInvalidArgument } = require("@sessiond/client/grpc-js");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

async function main() {
  assert.match(require.resolve("@sessiond/client"), /node_modules\\/@sessiond\\/client\\/dist\\/cjs\\/index\\.js$/);
  const client = createSessionClient(process.env.SESSIOND_URL);
  const { session } = await client.createSession({ userId: "cjs-user", dataSource: "warehouse", accessLevel: AccessLevel.READ });
  const got = await client.getSession({ sessionId: session.sessionId });
  assert.equal(got.session.accessLevel, AccessLevel.READ);
  const listed = await client.listSessions({ userId: "cjs-user" });
  assert.equal(listed.sessions.length, 1);
  // A READ session may not write data: the same helpers read the error.
  await assert.rejects(client.setSessionData({ sessionId: session.sessionId, key: "k", value: { kind: { case: "boolValue", value: true } } }), (e) => isPermissionDenied(e));
  const { session: writable } = await client.createSession({ userId: "cjs-user", dataSource: "warehouse", accessLevel: AccessLevel.WRITE });
  await client.setSessionData({ sessionId: writable.sessionId, key: "k", value: { kind: { case: "boolValue", value: true } } });
  assert.equal((await client.getSessionData({ sessionId: writable.sessionId, key: "k" })).value.kind.value, true);
  await assert.rejects(client.getSession({ sessionId: crypto.randomUUID() }), (e) => isNotFound(e));

  // The grpc-js client: the same messages, grpc-js errors.
  const viaGrpc = createSessionGrpcClient(process.env.SESSIOND_TARGET);
  const again = await viaGrpc.getSession({ sessionId: session.sessionId });
  assert.equal(again.session.$typeName, "session.v1.Session");
  await assert.rejects(viaGrpc.getSession({ sessionId: "nope" }), (e) => isInvalidArgument(e) && e.code === grpc.status.INVALID_ARGUMENT);
  viaGrpc.close();

  // The .proto file, resolved through the package, with proto-loader's dynamic stubs.
  const definition = protoLoader.loadSync(require.resolve("@sessiond/client/proto/session/v1/session.proto"), { longs: String, enums: String });
  const Service = grpc.loadPackageDefinition(definition).session.v1.SessionService;
  const dynamic = new Service(process.env.SESSIOND_TARGET, grpc.credentials.createInsecure());
  const reply = await new Promise((resolve, reject) => dynamic.getSession({ sessionId: session.sessionId }, (e, r) => (e ? reject(e) : resolve(r))));
  assert.equal(reply.session.accessLevel, "ACCESS_LEVEL_READ");
  dynamic.close();

  let expiring;
  for await (const event of watchSessions(client, { userId: "cjs-user", eventTypes: [EventType.EXPIRED], sendInitialSnapshot: true })) {
    if (event.type === EventType.HEARTBEAT && expiring === undefined) {
      ({ session: expiring } = await client.createSession({ userId: "cjs-user", dataSource: "warehouse", ttl: { seconds: 1n } }));
    }
    if (event.type === EventType.EXPIRED && event.session.sessionId === expiring?.sessionId) break;
  }
  console.log("cjs ok");
}
main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
`;

describe("@sessiond/client installed from its tarball into a fresh project", () => {
  let work: string;
  let consumer: string;
  let tarball: string;
  let app: App;
  let env: Record<string, string>;
  let attw: Promise<string>;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "sessiond-client-package-"));
    consumer = join(work, "consumer");
    mkdirSync(consumer);
    // npm pack runs the package's prepack script: a clean build.
    const packed = JSON.parse(await sh("npm", ["pack", "--json", "--pack-destination", work], PACKAGE_DIR)) as { filename: string }[];
    tarball = join(work, packed[0]?.filename ?? "");
    // attw reads the tarball alone: let it work while npm installs.
    attw = sh(join(REPO, "node_modules", ".bin", "attw"), [tarball, "--profile", "node16", "--format", "json"], work);
    attw.catch(() => undefined); // its test reports the failure
    writeFileSync(join(consumer, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const peers = ["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node", "@grpc/grpc-js", "@grpc/proto-loader", "@types/node"];
    await sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball, ...peers.map((name) => `${name}@${installedVersion(name)}`)], consumer);
    app = await startTestApp();
    env = { SESSIOND_URL: `http://127.0.0.1:${app.port}`, SESSIOND_TARGET: `127.0.0.1:${app.port}` };
  });

  after(async () => {
    await app?.close();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  test("the tarball holds the built client, the proto and the manifest: no sources, tests, benches or server", async () => {
    const files = (await sh("tar", ["-tzf", tarball], work)).split("\n").filter((line) => line !== "");
    const unexpected = files.filter((file) => !/^package\/(package\.json|README\.md|proto\/session\/v1\/session\.proto|dist\/(esm|cjs)\/[\w/-]+\.(js|d\.ts)|dist\/cjs\/package\.json)$/.test(file));
    assert.deepEqual(unexpected, []);
    for (const entry of ["dist/esm/index.js", "dist/cjs/index.js", "dist/esm/index.d.ts", "dist/cjs/index.d.ts", "dist/esm/grpc-js.js", "dist/cjs/grpc-js.d.ts"]) {
      assert.ok(files.includes(`package/${entry}`), `${entry} is shipped`);
    }
    const installed = join(consumer, "node_modules", "@sessiond", "client");
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as Record<string, unknown>;
    assert.equal(manifest["dependencies"], undefined, "no runtime dependencies: the peers are the caller's");
    assert.equal(manifest["sideEffects"], false);
    const shipped = files.filter((file) => file.endsWith(".js")).map((file) => readFileSync(join(installed, file.slice("package/".length)), "utf8"));
    for (const serverOnly of ["ioredis", "pino", "prom-client", "jose", "p-limit"]) {
      assert.ok(!shipped.some((code) => code.includes(`"${serverOnly}"`)), `nothing shipped imports ${serverOnly}`);
    }
  });

  test("plain node, ESM: create, get, list, set data, watch an expiry", async () => {
    writeFileSync(join(consumer, "esm.mjs"), ESM_SCRIPT);
    assert.match(await sh(process.execPath, ["esm.mjs"], consumer, env), /esm ok/);
  });

  test("plain node, CommonJS: the same, plus the grpc-js client and the exported .proto", async () => {
    writeFileSync(join(consumer, "cjs.cjs"), CJS_SCRIPT);
    assert.match(await sh(process.execPath, ["cjs.cjs"], consumer, env), /cjs ok/);
  });

  test("the README snippets type-check with tsc --strict against the shipped .d.ts, then run", async () => {
    const snippets = [readFileSync(join(PACKAGE_DIR, "README.md"), "utf8"), readFileSync(join(REPO, "README.md"), "utf8")].flatMap(tsSnippets);
    assert.ok(snippets.length >= 5, `expected the READMEs' TypeScript snippets, found ${snippets.length}`);
    const dir = join(consumer, "readme");
    mkdirSync(dir);
    // The snippets name the default address; the test's server listens elsewhere.
    snippets.forEach((code, i) => writeFileSync(join(dir, `snippet-${i + 1}.ts`), code.replaceAll("127.0.0.1:8080", `127.0.0.1:${app.port}`)));
    writeFileSync(
      join(consumer, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { strict: true, target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", types: ["node"], skipLibCheck: false, rootDir: "readme", outDir: "out" },
        include: ["readme"],
      }),
    );
    await sh(TSC, ["-p", "tsconfig.json"], consumer);
    // Each snippet uses its own user ids: they can run side by side.
    await Promise.all(snippets.map((_, i) => sh(process.execPath, [join("out", `snippet-${i + 1}.js`)], consumer)));
  });

  test("@arethetypeswrong/cli finds the types right for ESM and CommonJS consumers", async () => {
    // The node16 profile leaves out node10 resolution (no `exports` support), which Node 20+ never uses.
    const report = JSON.parse(await attw) as { problems: Record<string, { entrypoint: string; resolutionKind?: string }[]>; analysis: { entrypoints: Record<string, unknown> } };
    const problems = Object.values(report.problems)
      .flat()
      .filter((problem) => problem.resolutionKind !== "node10");
    assert.deepEqual(problems, []);
    assert.deepEqual(Object.keys(report.analysis.entrypoints).sort(), [".", "./grpc-js", "./package.json", "./proto/*"]);
  });
});
