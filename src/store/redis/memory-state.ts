/**
 * What the store knows of Redis's memory: its eviction policy and whether it
 * refuses writes for lack of memory. Read from `INFO memory` (which managed
 * Redis offerings allow even where CONFIG is refused), plus the store's own
 * sightings of OOM replies, since Redis compares a figure INFO does not show
 * (used memory less replication and AOF buffers) with maxmemory.
 *
 * Only `noeviction` is safe: under any other policy Redis deletes keys it
 * needs (a record without its index entries, a due-queue member, counters,
 * the event log) silently. `volatile-*` is not safe either: every session
 * record, data hash and index carries a TTL, so they are exactly what those
 * policies evict, while the keys without one (counters, due queue, event
 * log) stay, and then disagree with what is left.
 */
import type { StoreProblem, StoreProblems } from "../store.js";

/** The only maxmemory-policy under which Redis never deletes a key on its own. */
export const SAFE_EVICTION_POLICY = "noeviction";

/** An OOM reply counts as "memory full" for this long after it was seen. */
const REFUSAL_MEMORY_MS = 5000;

export class RedisMemoryState {
  private lastRefusal = 0;

  /** Redis refused a write with OOM. */
  refused(): void {
    this.lastRefusal = Date.now();
  }

  /** The problems `INFO memory` text shows, with what the store saw itself. */
  read(info: string): StoreProblems {
    const field = (name: string): string | undefined => new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
    const policy = field("maxmemory_policy");
    const used = Number(field("used_memory"));
    const max = Number(field("maxmemory"));
    const problems: StoreProblem[] = [];
    if (policy !== SAFE_EVICTION_POLICY) problems.push("eviction_policy");
    const full = (max > 0 && used >= max) || Date.now() - this.lastRefusal < REFUSAL_MEMORY_MS;
    if (full) problems.push("memory_full");
    return policy === undefined ? { problems } : { problems, evictionPolicy: policy };
  }
}
