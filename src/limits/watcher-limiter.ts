/**
 * Caps the concurrent WatchSessions streams of one principal (in this
 * process): each stream holds a server-side subscription and a connection,
 * so one caller must not be able to open thousands. Beyond the cap a watch
 * fails with RESOURCE_EXHAUSTED (limit_exceeded) and changes nothing.
 */
import { SessionError } from "../domain/errors.js";

export class WatcherLimiter {
  private readonly active = new Map<string, number>();

  constructor(readonly maxPerPrincipal: number) {}

  /** Admits one more stream of the principal, or throws limit_exceeded. Returns its release (idempotent). */
  acquire(principalKey: string): () => void {
    const n = this.active.get(principalKey) ?? 0;
    if (n >= this.maxPerPrincipal) {
      throw new SessionError("limit_exceeded", `at most ${this.maxPerPrincipal} concurrent watches per caller`);
    }
    this.active.set(principalKey, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.active.get(principalKey) ?? 1) - 1;
      if (left <= 0) this.active.delete(principalKey);
      else this.active.set(principalKey, left);
    };
  }

  count(principalKey: string): number {
    return this.active.get(principalKey) ?? 0;
  }
}
