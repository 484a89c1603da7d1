/**
 * A bounded FIFO between a synchronous producer (the event bus) and one async
 * consumer (a watch stream). Nothing between the bus and the network applies
 * HTTP/2 back-pressure, so the queue is capped: once full it refuses further
 * items and stays "overflowed", and the consumer ends the stream.
 */
export class EventQueue<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private overflow = false;

  constructor(private readonly limit: number) {}

  /** True once an item was refused because the queue was full. */
  get overflowed(): boolean {
    return this.overflow;
  }

  /** Appends, or returns false (and marks the queue overflowed) when full. */
  push(item: T): boolean {
    if (this.overflow) return false;
    if (this.items.length >= this.limit) {
      this.overflow = true;
    } else {
      this.items.push(item);
    }
    this.wake?.();
    return !this.overflow;
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  peek(): T | undefined {
    return this.items[0];
  }

  /**
   * Resolves when an item is available, the queue overflowed, timeoutMs passed
   * or the signal aborted, whichever comes first. Never rejects. Everything it
   * registers is removed before it resolves.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.items.length > 0 || this.overflow || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      signal.addEventListener("abort", done, { once: true });
      this.wake = done;
    });
  }
}
