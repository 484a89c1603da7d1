/**
 * What a failed Redis call means for the caller: was the command applied,
 * refused, or is its outcome unknown? The store tells UNAVAILABLE ("not
 * applied, try again") only when it knows the command never reached Redis or
 * Redis refused it; a command that was written to the connection and whose
 * reply did not come back may have been applied, so it is reported as
 * deadline_exceeded (no reply in time) or outcome_unknown (connection lost).
 *
 * `sent` is the store's own knowledge: false while it was still waiting for a
 * ready connection, true once the command was handed to ioredis on a ready
 * connection (ioredis writes it within the event-loop turn, or once the
 * auto-pipeline in flight is answered; enableOfflineQueue is off, so it never
 * waits for a reconnect: a connection lost first fails it as not written).
 */
import { isSessionError, SessionError } from "../../domain/errors.js";

/** Replies of a reachable Redis that refuse the command (nothing was applied) because it cannot serve now. */
const REFUSED_REPLIES = /^(LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|NOSCRIPT)\b/;
/** Redis is at maxmemory with noeviction: the command was refused before it wrote anything. */
const OOM_REPLY = /^OOM\b/;
/**
 * A Redis Cluster refused a command of a script: the partition's slot is being
 * moved (a reshard) or has no primary (a failover). Redis refuses before that
 * command runs, and a script learns whether its slot moves before its first
 * write (before_writes in lua/prelude.ts), so a refused script wrote nothing:
 * it is sent again with the same arguments until the slot settles.
 */
const SLOT_IN_MOTION = /Script attempted to (access a non local key|execute a (write )?command while the cluster is down)/;

/** The cluster refused a command of a script because of its slot's state; worth sending again shortly (see SLOT_IN_MOTION). */
export function isSlotInMotion(e: unknown): boolean {
  return e instanceof Error && e.name === "ReplyError" && SLOT_IN_MOTION.test(e.message);
}
/** ioredis's message for a command it refused to send (no writable connection). */
const NOT_WRITTEN = /Stream isn't writeable|enableOfflineQueue/;

/** The message a caller gets when Redis refuses writes for lack of memory (never Redis's own text). */
export const STORE_FULL_MESSAGE = "the session store is full: writes are refused until sessions end or an operator adds memory";

export function isOutOfMemory(e: unknown): boolean {
  return e instanceof Error && e.name === "ReplyError" && OOM_REPLY.test(e.message);
}

/** The error a store call that failed with `e` reports; `sent` says whether the command left for Redis. */
export function classifyFailure(e: unknown, sent: boolean): SessionError | Error {
  if (isSessionError(e)) return e;
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof Error && e.name === "ReplyError") {
    if (OOM_REPLY.test(message)) return new SessionError("limit_exceeded", STORE_FULL_MESSAGE);
    if (SLOT_IN_MOTION.test(message)) return new SessionError("unavailable", "redis refused the call: its hash slot is moving or has no primary");
    if (REFUSED_REPLIES.test(message)) return new SessionError("unavailable", `redis refused the call: ${message.split(" ")[0]}`);
    // A script or protocol bug: not the caller's fault and not an outage. Kept as a
    // plain Error (the API maps it to INTERNAL); Redis error text carries no values.
    return new Error(`redis command failed: ${message}`, { cause: e });
  }
  if (!sent || NOT_WRITTEN.test(message)) return new SessionError("unavailable", `redis unavailable: ${message}`);
  if (/timed out/i.test(message)) return deadlineExceeded();
  // MaxRetriesPerRequestError or "Connection is closed": the connection broke with the command in flight.
  return new SessionError("outcome_unknown", "the connection to redis broke before its answer: the call may or may not have been applied");
}

/** The call was sent and its answer did not come within the command timeout. */
export function deadlineExceeded(): SessionError {
  return new SessionError("deadline_exceeded", "redis did not answer in time: the call may or may not have been applied");
}
