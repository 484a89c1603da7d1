/**
 * bindAccessorGlobals (src/startup/global-bindings.ts) turns Node's accessor
 * globals into plain properties: the same values, still writable and
 * configurable, and a global that is already plain is left alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Buffer as ImportedBuffer } from "node:buffer";
import importedProcess from "node:process";
import { performance as importedPerformance } from "node:perf_hooks";
import { bindAccessorGlobals } from "../src/startup/global-bindings.js";

test("Buffer, process and performance become plain properties holding the same values", () => {
  const before = ["Buffer", "process", "performance"].map((name) => Object.getOwnPropertyDescriptor(globalThis, name));
  assert.ok(before.every((d) => d?.get !== undefined), "Node defines them as accessors");
  bindAccessorGlobals();
  for (const [name, value] of [
    ["Buffer", ImportedBuffer],
    ["process", importedProcess],
    ["performance", importedPerformance],
  ] as const) {
    const descriptor = Object.getOwnPropertyDescriptor(globalThis, name);
    assert.equal(descriptor?.get, undefined, name);
    assert.equal(descriptor?.value, value, name);
    assert.equal(descriptor?.writable, true, name);
    assert.equal(descriptor?.configurable, true, name);
  }
  assert.equal(Object.getOwnPropertyDescriptor(globalThis, "Buffer")?.enumerable, before[0]?.enumerable);
  assert.equal(Object.getOwnPropertyDescriptor(globalThis, "performance")?.enumerable, before[2]?.enumerable);
  assert.equal(Buffer.from("é", "utf8").length, 2);
  assert.ok(performance.now() > 0);
});

test("a second call changes nothing, and an assignment still replaces the global", () => {
  bindAccessorGlobals();
  const descriptor = Object.getOwnPropertyDescriptor(globalThis, "Buffer");
  bindAccessorGlobals();
  assert.deepEqual(Object.getOwnPropertyDescriptor(globalThis, "Buffer"), descriptor);
  const replaced = { marker: true };
  const g = globalThis as unknown as Record<string, unknown>;
  g["performance"] = replaced;
  try {
    assert.equal(g["performance"], replaced);
  } finally {
    g["performance"] = importedPerformance;
  }
});
