/**
 * What the event path does with an entry it cannot read (see
 * store/unreadable.ts): it is skipped, logged once (one error line, with ids
 * and the fixed problem text, never a value) and counted, and only the
 * watchers that asked for that very session are ended with INTERNAL. The
 * reader goes on; every other watcher of the tenant misses nothing it could
 * have been sent.
 */
import type { Logger } from "pino";
import { SessionError } from "../domain/errors.js";
import { countUnreadable, type UnreadableKind } from "../observability/metrics.js";

/** Ids remembered to log each entry once; older ones may log again (bounded memory). */
const REMEMBERED = 1024;

export class UnreadableEvents {
  private readonly seen = new Set<string>();

  constructor(private readonly logger: Logger | undefined) {}

  /**
   * Logs and counts an entry once (by event id and kind); later reports of it
   * (a replay meeting it again) are silent. Returns whether it was the first.
   */
  report(kind: UnreadableKind, entry: { readonly id: string; readonly tenant?: string; readonly sessionId?: string; readonly problem: string }): boolean {
    const key = `${kind} ${entry.id}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    if (this.seen.size > REMEMBERED) {
      const oldest = this.seen.values().next();
      if (oldest.done !== true) this.seen.delete(oldest.value);
    }
    countUnreadable(kind);
    this.logger?.error(
      { eventId: entry.id, kind, ...(entry.tenant === undefined ? {} : { tenant: entry.tenant }), ...(entry.sessionId === undefined ? {} : { sessionId: entry.sessionId }), problem: entry.problem },
      "unreadable event skipped",
    );
    return true;
  }
}

/** The error a watcher of one session ends with when an event of that session cannot be read. */
export function unreadableEventError(sessionId: string): SessionError {
  return new SessionError("internal", `an event of session ${sessionId} could not be read (it was skipped)`);
}
