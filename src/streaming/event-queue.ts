/**
 * A bounded FIFO between a synchronous producer (the event hub) and one async
 * consumer (a watch stream). Nothing between Redis and the network applies
 * HTTP/2 back-pressure, so the queue is capped: once full it refuses further
 * items and stays "overflowed", and the consumer ends the stream. The producer
 * may also end the queue with an error (shutdown), which wakes the consumer.
 */
export class EventQueue<T> {
  private items: T[] = [];
  private first = 0;
  private wake: (() => void) | undefined;
  private overflow = false;
  private endError: Error | undefined;
  /** The signal wait() listens to; its listener stays between waits until close(). */
  private signal: AbortSignal | undefined;
  private readonly onAbort = (): void => this.wake?.();

  constructor(private readonly limit: number) {}

  /** True once an item was refused because the queue was full. */
  get overflowed(): boolean {
    return this.overflow;
  }

  /** The error the producer ended the queue with, if it did. */
  get ended(): Error | undefined {
    return this.endError;
  }

  get size(): number {
    return this.items.length - this.first;
  }

  /** Appends, or returns false (and marks the queue overflowed) when full or ended. */
  push(item: T): boolean {
    if (this.overflow || this.endError !== undefined) return false;
    if (this.size >= this.limit) {
      this.overflow = true;
    } else {
      this.items.push(item);
    }
    this.wake?.();
    return !this.overflow;
  }

  /** Ends the queue: the consumer sees `ended` at its next look. */
  end(error: Error): void {
    this.endError ??= error;
    this.wake?.();
  }

  shift(): T | undefined {
    if (this.first >= this.items.length) return undefined;
    const item = this.items[this.first];
    this.first += 1;
    // Array.shift is O(n); drop the consumed prefix only now and then.
    if (this.first === this.items.length) {
      this.items = [];
      this.first = 0;
    } else if (this.first >= 1024) {
      this.items = this.items.slice(this.first);
      this.first = 0;
    }
    return item;
  }

  /**
   * Resolves when an item is available, the queue overflowed or ended,
   * timeoutMs passed or the signal aborted, whichever comes first. Never
   * rejects. Its timer is cleared before it resolves; its abort listener stays
   * on the signal for the next wait until close(): a watcher waits once per
   * event, and adding and removing an EventTarget listener each time cost more
   * than the delivery itself at 10k watchers.
   */
  wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (this.size > 0 || this.overflow || this.endError !== undefined || signal.aborted) return Promise.resolve();
    if (this.signal !== signal) {
      this.close();
      signal.addEventListener("abort", this.onAbort, { once: true });
      this.signal = signal;
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      this.wake = done;
    });
  }

  /** Removes the abort listener wait() left on its signal; the consumer calls it when it is done. Safe to call twice. */
  close(): void {
    this.signal?.removeEventListener("abort", this.onAbort);
    this.signal = undefined;
  }
}
