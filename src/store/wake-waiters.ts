/**
 * Waits that news ends early: each resolves true when woken, false at its
 * `until` (epoch ms) or once its signal aborts. The stores' waits for news
 * share it (the Redis partitions' wake-up reads, MemoryStore.waitDue).
 */
export class WakeWaiters {
  private readonly waiters = new Set<() => void>();

  /** Waits in progress. */
  get size(): number {
    return this.waiters.size;
  }

  wait(until: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted === true) return Promise.resolve(false);
    return new Promise((resolve) => {
      const end = (woken: boolean): void => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        this.waiters.delete(woke);
        resolve(woken);
      };
      const woke = (): void => end(true);
      const aborted = (): void => end(false);
      const timer = setTimeout(() => end(false), Math.max(0, until - Date.now()));
      signal?.addEventListener("abort", aborted, { once: true });
      this.waiters.add(woke);
    });
  }

  /** Ends every wait in progress with true. */
  wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}
