/**
 * Entries of the store that cannot be read: an event-log entry that does not
 * decode (a raw writer's XADD, a tampered field) or a record that does not.
 * Stores skip them and report them here, so that one bad entry costs the
 * callers it concerns, never the reader or the rest of a listing.
 */

export interface UnreadableEntry {
  /** The event id (log entries) or session id (records). */
  readonly id: string;
  /** The tenant and session the entry names, when those fields could be read: the only watchers told. */
  readonly tenant?: string;
  readonly sessionId?: string;
  /** What was wrong, from our own fixed wording (never a value). */
  readonly problem: string;
}

export type UnreadableListener = (entry: UnreadableEntry) => void;

/** Listeners of a store's unreadable entries; each must not throw. */
export class UnreadableListeners {
  private readonly listeners = new Set<UnreadableListener>();

  add(listener: UnreadableListener): () => void {
    const entry: UnreadableListener = (e) => listener(e);
    this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  notify(entries: readonly UnreadableEntry[]): void {
    for (const e of entries) for (const listener of this.listeners) listener(e);
  }
}
