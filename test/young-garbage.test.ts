/**
 * What a call leaves in the per-call registries (the loop-aware deadlines of
 * its Redis commands, the calls in flight that shutdown aborts) dies in
 * young-generation collections once the call has left them. Kept in a
 * long-lived Set, every call's payload outlived them and was promoted to the
 * old generation: about 1 KiB a call here, and in the service each call's
 * whole graph (README, "Garbage the service makes").
 *
 * Measured in a child process with --expose-gc (test/support/young-garbage.ts):
 * the old generation's growth per call across the churn and two minor
 * collections, with no major collection in between (one would hide what the
 * minor ones kept; such a run is repeated).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);
/** A quarter of a payload: what is left when payloads are not kept is the registry's own few words a call. */
const BOUND_BYTES = 256;
const RUNS = 3;

async function promotedPerCall(registry: string): Promise<number> {
  for (let attempt = 1; attempt <= RUNS; attempt++) {
    const { stdout } = await run(process.execPath, ["--expose-gc", "--import", "tsx", "test/support/young-garbage.ts", registry], { timeout: 120_000 });
    const result = JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as { promotedPerCall: number; majors: number };
    if (result.majors === 0) return result.promotedPerCall;
  }
  throw new Error(`a major collection ran during each of ${RUNS} measurements`);
}

describe("per-call registries leave nothing for the old generation", () => {
  for (const registry of ["loop-aware-deadline", "calls-in-flight"]) {
    test(registry, async () => {
      const promoted = await promotedPerCall(registry);
      assert.ok(promoted < BOUND_BYTES, `${registry}: ${promoted.toFixed(0)} B a call promoted (a call's payload is about 1 KiB)`);
    });
  }
});
