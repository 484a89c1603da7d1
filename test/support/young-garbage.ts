/**
 * Run with `node --expose-gc --import tsx` (test/young-garbage.test.ts): asks
 * whether what one of the per-call registries (argv[2]) held for calls that
 * have left it dies in young-generation collections. Prints one JSON line:
 * the old generation's growth per call across the churn and two minor
 * collections (about a payload when payloads are kept, a few bytes when they
 * are not), and how many major collections ran meanwhile (one would free what
 * the minor ones kept, and hide it).
 *
 * The registry is first made old (major collections), as a server's are after
 * its first minutes, then takes and lets go of calls, 64 at a time and each
 * turn like a call's end, each holding about 1 KiB. A registry kept in a
 * long-lived Set or Map keeps those payloads alive through minor collections
 * (until the next major one), which is what promoted every call's graph in
 * the service.
 */
import { constants, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import { getHeapSpaceStatistics } from "node:v8";
import { loopAwareDeadline } from "../../src/observability/loop-aware-deadline.js";
import { CallsInFlight } from "../../src/server/calls-in-flight.js";

declare const gc: (options?: { type: "minor" | "major" }) => void;

const CALLS = 5_000;
/** A payload of about 1 KiB per call (an array of small integers). */
const PAYLOAD_SLOTS = 128;
/** Calls a registry holds at once, as many as one connection has in flight. */
const IN_FLIGHT = 64;

type Registry = (payload: object) => () => void;

const registries: Record<string, () => Registry> = {
  "loop-aware-deadline": () => (payload) => {
    const deadline = loopAwareDeadline(60_000, () => void payload);
    return () => deadline.cancel();
  },
  "calls-in-flight": () => {
    const calls = new CallsInFlight(new AbortController().signal);
    return (payload) => {
      const slot = calls.add({ abort: () => void payload });
      return () => calls.delete(slot);
    };
  },
};

const make = registries[process.argv[2] ?? ""];
if (make === undefined) throw new Error(`registry: one of ${Object.keys(registries).join(", ")}`);
const register = make();
// Old before the churn, as a server's are after its first minutes.
const warm = Array.from({ length: IN_FLIGHT }, () => register({}));
gc({ type: "major" });
gc({ type: "major" });
for (const release of warm) release();

const oldSpace = (): number => getHeapSpaceStatistics().find((space) => space.space_name === "old_space")?.space_used_size ?? Number.NaN;
let majors = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries() as (PerformanceEntry & { readonly detail?: { readonly kind?: number } })[]) {
    if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
  }
}).observe({ entryTypes: ["gc"] });
const before = oldSpace();
let held: (() => void)[] = [];
for (let i = 0; i < CALLS; i++) {
  held.push(register({ call: i, body: new Array(PAYLOAD_SLOTS).fill(i) }));
  if (held.length === IN_FLIGHT) {
    for (const release of held) release();
    held = [];
    // Calls end in turns of their own.
    await nextTurn();
  }
}
for (const release of held) release();
held = [];
gc({ type: "minor" });
gc({ type: "minor" });
await nextTurn();
console.log(JSON.stringify({ promotedPerCall: (oldSpace() - before) / CALLS, majors }));
