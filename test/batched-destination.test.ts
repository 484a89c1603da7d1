/**
 * The batched stdout destination (src/logging/batched-destination.ts): lines of
 * one event-loop turn go out together, in order, and are not lost on exit.
 */
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const MODULE = fileURLToPath(new URL("../src/logging/batched-destination.ts", import.meta.url));

/** Runs `body` in a child node process with `batchedDescriptor` imported; returns its stdout. */
function run(body: string): { stdout: string; status: number | null; signal: NodeJS.Signals | null } {
  const script = `import { batchedDescriptor } from ${JSON.stringify(MODULE)};\n${body}`;
  const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { encoding: "utf8", timeout: 60_000 });
  return { stdout: child.stdout, status: child.status, signal: child.signal };
}

describe("batched log destination", () => {
  it("keeps the order of lines from every writer on the same descriptor", () => {
    const { stdout, status } = run(`
      const a = batchedDescriptor(1), b = batchedDescriptor(1);
      assert(a === b);
      for (let i = 0; i < 5; i++) { a.write("a" + i + "\\n"); b.write("b" + i + "\\n"); }
      function assert(x) { if (!x) throw new Error("not shared"); }
    `);
    assert.equal(status, 0);
    assert.equal(stdout, ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4", ""].join("\n"));
  });

  it("flushes lines written just before process.exit()", () => {
    const { stdout, status } = run(`batchedDescriptor(1).write("last words\\n"); process.exit(3);`);
    assert.equal(status, 3);
    assert.equal(stdout, "last words\n");
  });

  it("flushes on an uncaught exception", () => {
    const { stdout, status } = run(`batchedDescriptor(1).write("before the throw\\n"); throw new Error("boom");`);
    assert.notEqual(status, 0);
    assert.equal(stdout, "before the throw\n");
  });

  it("has written a turn's lines by the next turn, so a kill after it loses nothing", () => {
    const { stdout, signal } = run(`
      batchedDescriptor(1).write("acknowledged\\n");
      setImmediate(() => setImmediate(() => process.kill(process.pid, "SIGKILL")));
    `);
    assert.equal(signal, "SIGKILL");
    assert.equal(stdout, "acknowledged\n");
  });

  it("writes at once beyond the batch bound, in order", () => {
    const { stdout, status } = run(`
      const d = batchedDescriptor(1);
      const line = "x".repeat(999) + "\\n";
      for (let i = 0; i < 200; i++) d.write(line);
      d.write("end\\n");
      process.kill(process.pid, "SIGKILL");
    `);
    // Killed in the same turn: what went past the bound is out, the rest of the turn is lost (the documented crash window).
    assert.equal(status, null);
    assert.ok(stdout.length >= 64 * 1000, `only ${stdout.length} bytes were written before the kill`);
    assert.ok(stdout.length < 200 * 1000, "the lines of the turn below the bound were written before the end of the turn");
    assert.match(stdout, /^(x{999}\n)+$/);
  });
});
