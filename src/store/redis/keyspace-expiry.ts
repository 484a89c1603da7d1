/**
 * Redis keyspace notifications for the per-session shadow keys
 * (`P T:{sid}:x`, which expire exactly at the session's expire time): one
 * subscriber connection per process on `__keyevent@<db>__:expired`.
 *
 * This is the backstop, not the clock: Redis fires `expired` only when it
 * actually deletes a key, which lags by seconds to minutes when many keys
 * carry TTLs, and Pub/Sub drops what is published while the subscriber is
 * disconnected (see the field notes). The expiry scheduler's due queue is what
 * makes expiry timely and lossless; a notification only makes the expiry of
 * that one session happen now if the scheduler has not done it yet.
 *
 * At start the service enables the flags it needs (E: keyevent channel, x:
 * expired events), merged with what is already set, and (compact-hashes.ts)
 * the listpack threshold that keeps encrypted records compact; both again
 * after a reconnect, since a restarted Redis forgets CONFIG SET. Where CONFIG is refused
 * (managed Redis), it checks with a probe key that an operator has set them,
 * and otherwise refuses to start with a message naming the flags.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { DueWatch } from "../store.js";
import { loopAwareDeadline, type Deadline } from "../../observability/loop-aware-deadline.js";
import { ensureCompactHashes } from "./compact-hashes.js";
import { probeKey, sessionKeyMatcher } from "./keys.js";

/** What an operator must set when the service may not. */
export const REQUIRED_FLAGS_MESSAGE =
  "Redis keyspace notifications for expired keys are off and this service may not enable them (CONFIG is refused): " +
  "set notify-keyspace-events to include the flags E and x (for example `notify-keyspace-events Ex` in redis.conf, " +
  "or the notify-keyspace-events parameter of a managed Redis), then start the service again";

/** The longest pause between attempts to restore the subscription after a reconnect. */
const RESTORE_RETRY_MAX_MS = 5000;

/** How long the probe waits for Redis to announce the expiry of its probe key. */
const PROBE_WAIT_MS = 1000;

/** The flags string with E and x added unless already implied ("A" means all event classes, x included). */
export function mergeNotifyFlags(current: string): string {
  let flags = current;
  if (!flags.includes("E")) flags += "E";
  if (!flags.includes("x") && !flags.includes("A")) flags += "x";
  return flags;
}

export interface KeyspaceExpiryOptions {
  /** The store's command connection (CONFIG, probe key). */
  readonly command: Redis;
  /** A fresh connection that becomes the subscriber (owned by the watch: closed on stop). */
  readonly subscriber: Redis;
  readonly keyPrefix: string;
  readonly db: number;
  readonly onDue: (tenant: string, sessionId: string) => void;
  readonly logger?: Logger;
  /** Bounds one command on either connection (the store's loop-aware command deadline, connections.ts). */
  readonly within: <T>(pending: Promise<T>) => Promise<T>;
}

/** Enables the notifications (or checks them), subscribes, and returns the running watch. */
export async function watchShadowKeyExpiry(options: KeyspaceExpiryOptions): Promise<DueWatch> {
  const { command, subscriber, keyPrefix, db, onDue, logger, within } = options;
  const channel = `__keyevent@${db}__:expired`;
  const sessionKey = sessionKeyMatcher(keyPrefix);
  const probes = new Map<string, () => void>();

  subscriber.on("message", (ch: string, key: string) => {
    if (ch !== channel) return;
    const probe = probes.get(key);
    if (probe !== undefined) {
      probe();
      return;
    }
    const name = sessionKey(key);
    if (name?.kind === "shadow") onDue(name.tenant, name.sessionId);
  });
  subscriber.on("error", () => {
    // ioredis reconnects and resubscribes by itself; the scheduler covers the gap.
  });

  try {
    const configured = await enableFlags(command, within, logger);
    await within(subscriber.subscribe(channel));
    if (!configured) await probe(command, within, keyPrefix, probes);
    // After the flags check: a start refused for want of them says that one thing only.
    await ensureCompactHashes(command, logger);
  } catch (error) {
    subscriber.disconnect();
    throw error;
  }

  // Connected and subscribed by now, so every later "ready" is a reconnect.
  // The subscriber is opened with autoResubscribe off (see RedisStore), because
  // ioredis's own resubscribe leaves its SUBSCRIBE's rejection unhandled: one
  // that times out (a slow Redis after a restart) would be an unhandled
  // rejection, which ends the process. A restarted Redis also forgets a flag
  // set with CONFIG SET: set it again.
  //
  // Both go over the subscriber connection itself, before its SUBSCRIBE puts
  // it in subscriber mode: at its own "ready" it is the one connection known
  // to be up. The command connection reconnects on its own schedule and
  // refuses commands until then (no offline queue), so a CONFIG sent there
  // when the subscriber happened to reconnect first failed, and the flags
  // stayed off until the next reconnect. A failed step (a timeout on a slow,
  // just restarted Redis) is retried while this connection stays up; the
  // scheduler's due queue covers the gap meanwhile.
  let stopped = false;
  let reconnects = 0;
  const restore = async (): Promise<void> => {
    const generation = ++reconnects;
    let flagsSet = false;
    for (let attempt = 0; ; attempt++) {
      if (stopped || generation !== reconnects || subscriber.status !== "ready") return;
      try {
        if (!flagsSet) {
          // false (CONFIG refused) means an operator set them, as checked at start.
          await enableFlags(subscriber, within, logger);
          await ensureCompactHashes(subscriber, logger);
          flagsSet = true;
        }
        await within(subscriber.subscribe(channel));
        return;
      } catch {
        if (attempt === 0) logger?.warn("could not restore keyspace notifications after a reconnect, retrying");
        await sleep(Math.min(100 * 2 ** attempt, RESTORE_RETRY_MAX_MS), undefined, { ref: false });
      }
    }
  };
  subscriber.on("ready", () => void restore());

  return {
    async stop() {
      stopped = true;
      subscriber.removeAllListeners("message");
      subscriber.disconnect();
    },
  };
}

/** true when the flags are (now) set; false when CONFIG is refused and they could not be checked. */
async function enableFlags(command: Redis, within: KeyspaceExpiryOptions["within"], logger: Logger | undefined): Promise<boolean> {
  try {
    const reply = (await within(command.config("GET", "notify-keyspace-events"))) as unknown;
    const current = Array.isArray(reply) && typeof reply[1] === "string" ? reply[1] : "";
    const merged = mergeNotifyFlags(current);
    if (merged !== current) {
      await within(command.config("SET", "notify-keyspace-events", merged));
      // A change to a shared server's settings: the operator should see it (it also affects other clients' subscriptions).
      logger?.info(
        { setting: "notify-keyspace-events", from: current, to: merged },
        `changed the Redis server setting notify-keyspace-events from "${current}" to "${merged}" (expired-key events for session expiry)`,
      );
    }
    return true;
  } catch (error) {
    if (error instanceof Error && error.name === "ReplyError") return false;
    throw error;
  }
}

/**
 * Proves that notifications arrive without CONFIG: a probe key with a 1 ms TTL
 * is read after its TTL, which makes Redis expire it lazily and announce it.
 */
async function probe(command: Redis, within: KeyspaceExpiryOptions["within"], keyPrefix: string, probes: Map<string, () => void>): Promise<void> {
  const key = probeKey(keyPrefix, randomUUID());
  let wait: Deadline | undefined;
  const heard = new Promise<boolean>((resolve) => {
    probes.set(key, () => resolve(true));
    // Loop-aware: a notification that sat unread while the process was busy was heard.
    wait = loopAwareDeadline(PROBE_WAIT_MS, () => resolve(false));
  });
  try {
    await within(command.set(key, "1", "PX", 1));
    await sleep(5);
    await within(command.exists(key));
    if (!(await heard)) throw new Error(REQUIRED_FLAGS_MESSAGE);
  } finally {
    wait?.cancel();
    probes.delete(key);
  }
}
