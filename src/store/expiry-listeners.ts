/**
 * The listeners of SessionStore.onExpired, shared by both stores. A listener
 * that throws must not turn a store call that succeeded into a failure (the
 * write has happened), so its error is swallowed here: listeners are required
 * not to throw, and this keeps one that does from doing harm.
 */
import type { Expiration, ExpiryListener } from "./store.js";

export class ExpiryListeners {
  private readonly listeners = new Set<ExpiryListener>();

  add(listener: ExpiryListener): () => void {
    // A wrapper per registration, so the same function added twice is told twice and removed once per call.
    const entry: ExpiryListener = (expirations) => listener(expirations);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  notify(expirations: readonly Expiration[]): void {
    if (expirations.length === 0) return;
    for (const listener of [...this.listeners]) {
      try {
        listener(expirations);
      } catch {
        // See the module comment.
      }
    }
  }
}
