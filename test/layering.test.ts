/**
 * The layout's rules, read from the source: no import in src/ reaches up a
 * layer (see README "Architecture"), connect's internal subpaths are imported
 * by one module only, and the packages they come from are pinned exactly.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * Layers of src/, lowest first, by top-level folder (or file). A module may
 * import from its own layer and the ones below it. gen/ (protobuf-es output)
 * is open to the transport layers and up; the domain never sees protobuf.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["domain"],
  ["crypto", "config", "logging", "observability"],
  ["store", "archive"],
  ["session"],
  ["streaming"],
  ["limits", "auth", "audit", "health", "reflection", "server"],
  ["api"],
  ["app.ts", "main.ts", "tools", "cluster"],
];
const GEN_FROM = 5;

/** The client package is shipped to other projects: it imports nothing outside its own sources. */
const CLIENT_SOURCES = "packages/client/src";
const CLIENT_PACKAGE = /^@sessiond\/client(\/|$)/;

/** The one module allowed to import connect's internal (not semver) subpaths. */
const CONNECT_INTERNALS_FENCE = `${CLIENT_SOURCES}/grpc-wire.ts`;
const CONNECT_INTERNAL = /^@connectrpc\/connect(-node)?\/(?!package\.json$)/;

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^"'`;]*?from\s*["']([^"']+)["']|(?:^|[\s;])import\s*\(\s*["']([^"']+)["']\s*\)|(?:^|[\s;])import\s+["']([^"']+)["']/gm;

/** Every module specifier a source file imports or re-exports. */
export function specifiers(source: string): string[] {
  const out: string[] = [];
  for (const match of source.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2] ?? match[3];
    if (spec !== undefined) out.push(spec);
  }
  return out;
}

/** "src/store/redis/keys.ts" → "store"; "src/app.ts" → "app.ts"; outside src → undefined. */
function area(path: string): string | undefined {
  const parts = path.split("/");
  if (parts[0] === "gen") return "gen";
  if (parts[0] !== "src" || parts.length < 2) return undefined;
  return parts[1];
}

function layerOf(name: string): number {
  const index = LAYERS.findIndex((layer) => layer.includes(name));
  if (index < 0) throw new Error(`src/${name} is in no layer: add it to LAYERS in test/layering.test.ts and to README's Architecture section`);
  return index;
}

/** Upward imports among the given files (repository-relative paths, "/" separated). */
export function layerViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [from, source] of files) {
    const fromArea = area(from);
    if (fromArea === undefined) continue;
    for (const spec of specifiers(source)) {
      if (CLIENT_PACKAGE.test(spec)) problems.push(`${from} imports ${spec}: the server does not depend on its client`);
      if (!spec.startsWith(".")) continue;
      const to = posix.normalize(posix.join(posix.dirname(from), spec)).replace(/\.js$/, ".ts");
      const toArea = area(to);
      if (toArea === undefined || toArea === fromArea) continue;
      const fromLayer = layerOf(fromArea);
      if (toArea === "gen") {
        if (fromLayer < GEN_FROM) problems.push(`${from} imports generated code (${to}): only the transport layers and up see protobuf`);
        continue;
      }
      if (layerOf(toArea) > fromLayer) problems.push(`${from} (${fromArea}) imports ${to} (${toArea}), a higher layer`);
    }
  }
  return problems.sort();
}

/** Imports of the client package's sources that leave them (the server, gen/, the repository). */
export function clientViolations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [from, source] of files) {
    for (const spec of specifiers(source)) {
      if (!spec.startsWith(".")) continue;
      const to = posix.normalize(posix.join(posix.dirname(from), spec));
      if (!to.startsWith(`${CLIENT_SOURCES}/`)) problems.push(`${from} imports ${to}: the client package imports nothing outside ${CLIENT_SOURCES}`);
    }
  }
  return problems.sort();
}

function sourceFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const full = join(entry.parentPath, entry.name);
    out.set(relative(ROOT, full).split(sep).join("/"), readFileSync(full, "utf8"));
  }
  return out;
}

describe("layering", () => {
  test("the import scanner finds static, type-only, re-export and dynamic imports", () => {
    const found = specifiers(
      ['import { a } from "./a.js";', 'import type { B } from "../b.js";', 'export { c } from "./c.js";', "const d = await import('./d.js');", 'import "./e.js";', 'import {\n  f,\n  g,\n} from "./fg.js";'].join("\n"),
    );
    assert.deepEqual(found, ["./a.js", "../b.js", "./c.js", "./d.js", "./e.js", "./fg.js"]);
  });

  test("an upward import is reported, naming both files", () => {
    const tree = new Map([
      ["src/domain/model.ts", 'import type { SessionStore } from "../store/store.js";'],
      ["src/store/store.ts", 'import type { SessionRecord } from "../domain/model.js";'],
      ["src/session/session-manager.ts", 'import { EventHub } from "../streaming/event-hub.js";'],
      ["src/store/redis/codec.ts", 'import { X } from "../../../gen/session/v1/session_pb.js";'],
      ["src/api/convert.ts", 'import { isNotFound } from "@sessiond/client";'],
    ]);
    assert.deepEqual(layerViolations(tree), [
      "src/api/convert.ts imports @sessiond/client: the server does not depend on its client",
      "src/domain/model.ts (domain) imports src/store/store.ts (store), a higher layer",
      "src/session/session-manager.ts (session) imports src/streaming/event-hub.ts (streaming), a higher layer",
      "src/store/redis/codec.ts imports generated code (gen/session/v1/session_pb.ts): only the transport layers and up see protobuf",
    ]);
  });

  test("no module in src/ imports from a higher layer", () => {
    assert.deepEqual(layerViolations(sourceFiles("src")), []);
  });

  test("the client package imports nothing outside its own sources", () => {
    const tree = new Map([
      [`${CLIENT_SOURCES}/watch.ts`, 'import { WATCH_CURSOR_METADATA } from "../../../src/streaming/watch-protocol.js";'],
      [`${CLIENT_SOURCES}/index.ts`, 'export * from "./gen/session/v1/session_pb.js";\nimport { X } from "../../../gen/session/v1/session_pb.js";'],
    ]);
    assert.deepEqual(clientViolations(tree), [
      `${CLIENT_SOURCES}/index.ts imports gen/session/v1/session_pb.js: the client package imports nothing outside ${CLIENT_SOURCES}`,
      `${CLIENT_SOURCES}/watch.ts imports src/streaming/watch-protocol.js: the client package imports nothing outside ${CLIENT_SOURCES}`,
    ]);
    assert.deepEqual(clientViolations(sourceFiles(CLIENT_SOURCES)), []);
  });

  test("connect's internal subpaths are imported by one module only", () => {
    const importers: string[] = [];
    for (const dir of ["src", CLIENT_SOURCES, "bench", "test"]) {
      for (const [path, source] of sourceFiles(dir)) {
        if (specifiers(source).some((spec) => CONNECT_INTERNAL.test(spec))) importers.push(path);
      }
    }
    assert.deepEqual(importers, [CONNECT_INTERNALS_FENCE]);
    assert.ok(CONNECT_INTERNAL.test("@connectrpc/connect/protocol-grpc"));
    assert.ok(!CONNECT_INTERNAL.test("@connectrpc/connect"));
  });

  test("@connectrpc/connect and connect-node are pinned exactly, to the version connect-node itself pins", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const connect = pkg.dependencies["@connectrpc/connect"];
    const node = pkg.dependencies["@connectrpc/connect-node"];
    assert.match(connect ?? "", /^\d+\.\d+\.\d+$/, "exact version of @connectrpc/connect");
    assert.match(node ?? "", /^\d+\.\d+\.\d+$/, "exact version of @connectrpc/connect-node");
    const nodePkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.resolve("@connectrpc/connect-node"))), "..", "..", "package.json"), "utf8")) as {
      peerDependencies: Record<string, string>;
    };
    assert.equal(nodePkg.peerDependencies["@connectrpc/connect"], connect);
    // The client package asks its users for the same versions (peer dependencies), since it holds the fence.
    const client = JSON.parse(readFileSync(join(ROOT, "packages", "client", "package.json"), "utf8")) as { peerDependencies: Record<string, string> };
    assert.equal(client.peerDependencies["@connectrpc/connect"], connect);
    assert.equal(client.peerDependencies["@connectrpc/connect-node"], node);
  });
});
