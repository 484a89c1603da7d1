/**
 * Idempotent create across partitions. With one partition the create script
 * matches an unguarded request id tenant-wide in the same atomic step as the
 * write (k_req). With several, the request id gets a claim in its own
 * partition (Partitioning.ofRequestId; lua/claim.ts) and the session is
 * written in its user's partition, two scripts in two slots. Each step is
 * atomic, and the whole behaves as the one script does:
 *
 * 1. claim: the first create to claim the request id owns it with its session
 *    id; any other create meets the claim.
 * 2. create: the claimed session id is created in its user's partition, unless
 *    it was made void (step 3), and only once.
 * 3. a create that meets a claim resolves the claimed session in that
 *    session's partition: live, it is the answer (created=false, as one Redis
 *    answers a repeated request id, whatever the user or parameters); ended,
 *    the request id is free (after a close or expiry a new create creates); not
 *    there yet, the claimer may still be between steps 1 and 2, so the create
 *    waits while the claim is younger than the command timeout (the claimer's
 *    deadline), then makes the id void (in the session's slot, so a late step 2
 *    is refused there) and takes the claim over with a compare-and-set. Whichever
 *    of step 2 and the void comes first decides, in one slot: the session either
 *    exists and is found, or never will. A claimer whose id went void answers
 *    with the session that took over, or UNAVAILABLE (retry).
 *
 * So a crash between the steps delays a retry by at most the command timeout,
 * and the retry creates (with its own session id: metadata is sealed to the id,
 * so a claimed id cannot be reused for another call's input). A create the
 * script refuses (a cap) releases its claim with compare-and-delete.
 *
 * The claim lasts as long as its session: created to last ttl + CLAIM_SLACK_MS
 * + the command timeout (the gap to step 2), its end kept in the record (rc);
 * an extend that would outlive it first renews it to twice the ttl (so that
 * only about one extend per ttl pays the extra round trips). A close deletes
 * it (compare-and-delete); after an expiry it is met and taken over (step 3),
 * or expires.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { isSessionError, SessionError } from "../../domain/errors.js";
import type { Partitioning } from "./keys.js";

/**
 * Margin between a session's expire time and its claim's end: the difference
 * between two primaries' clocks (each script takes its time from its own
 * primary) that the claims tolerate.
 */
export const CLAIM_SLACK_MS = 5000;
/** How long a void session id stays refused: past any create step sent before it was made void. */
export const VOID_MS = 3_600_000;
/** How often a create waiting for a claimer between its steps looks again. */
const PENDING_POLL_MS = 5;

/** Runs the claim script (lua/claim.ts) in a partition; its reply after "ok". */
type ClaimScript = (partition: number, args: readonly string[]) => Promise<string[]>;

export interface ClaimedCreate {
  readonly partitions: Partitioning;
  readonly tenant: string;
  readonly sessionId: string;
  /** The request id as stored, then its aliases (other stored forms). */
  readonly names: readonly string[];
  readonly ttlMs: number;
  /** The store's command timeout: how long a claimer may take between its steps. */
  readonly timeoutMs: number;
  readonly claim: ClaimScript;
  /** Runs the create script with the claim's end; its reply (`["ok", "1", ...]`, `["ok", "0", record...]` or `["ok", "lost"]`: lua/create.ts). */
  readonly create: (claimEnd: string) => Promise<string[]>;
}

const NOT_SETTLED = "the create's request id is held by a create still in progress: retry with the same request_id";

/** The create reply of a create with an unguarded request id on several partitions (see above). */
export async function createWithClaim(c: ClaimedCreate): Promise<string[]> {
  const primary = c.names[0] as string;
  const home = c.partitions.ofRequestId(c.tenant, primary);
  const byPartition = new Map<number, string[]>();
  for (const name of c.names) {
    const p = c.partitions.ofRequestId(c.tenant, name);
    byPartition.set(p, [...(byPartition.get(p) ?? []), name]);
  }
  // Aliases in other partitions are looked at first: a claim under one of them is the request id's.
  const groups = [...byPartition].sort(([a], [b]) => (a === home ? 1 : b === home ? -1 : 0));
  const life = String(c.ttlMs + CLAIM_SLACK_MS + c.timeoutMs);
  const giveUp = Date.now() + 2 * c.timeoutMs;
  let lost = false;

  const createClaimed = async (claimEnd: string): Promise<string[] | undefined> => {
    let reply: string[];
    try {
      reply = await c.create(claimEnd);
    } catch (error) {
      // Refused by the script (or by Redis before it ran): nothing was created, so the claim goes.
      if (isSessionError(error) && error.kind === "limit_exceeded") await c.claim(home, ["release", c.sessionId, primary]).catch(() => undefined);
      throw error;
    }
    if (reply[1] === "lost") {
      lost = true;
      return undefined;
    }
    // A session of an earlier version's request id key (per user partition) answered: this id will never exist.
    if (reply[1] === "0" && reply[3] !== c.sessionId) await c.claim(home, ["release", c.sessionId, primary]).catch(() => undefined);
    return reply;
  };

  for (;;) {
    if (Date.now() > giveUp) throw new SessionError("unavailable", NOT_SETTLED);
    const lookOnly = lost;
    let held: { partition: number; name: string; value: string; age: number } | undefined;
    for (const [partition, names] of groups) {
      const own = partition === home;
      const reply = await c.claim(partition, ["claim", c.sessionId, life, own && !lookOnly ? "1" : "0", ...names]);
      if (reply[0] === "held") {
        held = { partition, name: reply[1] as string, value: reply[2] as string, age: Number(reply[3]) };
        break;
      }
      if (reply[0] === "claimed") {
        const created = await createClaimed(reply[1] as string);
        if (created !== undefined) return created;
        break;
      }
    }
    if (held === undefined) {
      // No claim left to find after this id went void (the taker's create was refused): nothing to answer with.
      if (lookOnly) throw new SessionError("unavailable", NOT_SETTLED);
      // This id went void: look again, without claiming, for the session that took the claim over.
      continue;
    }
    const heldId = held.value.split(" ")[0] as string;
    const resolved = await c.claim(c.partitions.ofSession(heldId), ["resolve", heldId, !lost && held.age >= c.timeoutMs ? "1" : "0"]);
    if (resolved[0] === "live") return ["ok", "0", ...resolved.slice(1)];
    if (resolved[0] === "pending") {
      await sleep(PENDING_POLL_MS);
      continue;
    }
    if (lost) throw new SessionError("unavailable", NOT_SETTLED);
    // Free: take the claim over (an alias's claim in another partition is only deleted; the next round claims).
    const swapped = await c.claim(held.partition, ["swap", c.sessionId, life, held.name, held.value, held.partition === home ? primary : ""]);
    if (swapped[0] === "claimed") {
      const created = await createClaimed(swapped[1] as string);
      if (created !== undefined) return created;
    }
  }
}
