/**
 * A log destination that writes the lines of one event-loop turn together.
 *
 * A synchronous write per line costs a system call per line: two per RPC
 * (its log line and its audit record), which under load is a large part of
 * what a call costs. Here the lines written during one turn of the event loop
 * are joined and written with one synchronous write at the end of that turn
 * (setImmediate), or at once when BATCH_MAX_BYTES are waiting. The service
 * log and the audit log on the same file descriptor share one batch, so their
 * lines keep their order.
 *
 * Crash semantics: a line is in the kernel by the end of the turn in which it
 * was logged. A clean shutdown, process.exit() and an uncaught exception all
 * flush (process "exit"). A process killed outright (SIGKILL, an abort in
 * native code) loses the lines of its last turn: at most BATCH_MAX_BYTES, the
 * records of calls that completed in that turn, whose responses may already
 * have been handed to the connection.
 *
 * The writes themselves are pino.destination's (sonic-boom in sync mode:
 * partial writes, EAGAIN on a pipe and EPIPE are handled there).
 */
import { pino } from "pino";

/** Waiting bytes beyond which a batch is written at once: bounds the memory a burst can hold. */
export const BATCH_MAX_BYTES = 64 * 1024;

export interface BatchedDestination {
  write(line: string): void;
  /** Writes what is waiting, now. */
  flushSync(): void;
}

class LineBatch implements BatchedDestination {
  private lines: string[] = [];
  private bytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private readonly flushLater = (): void => {
    this.scheduled = undefined;
    this.flushSync();
  };

  constructor(private readonly sink: { write(text: string): unknown }) {}

  write(line: string): void {
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= BATCH_MAX_BYTES) {
      this.flushSync();
      return;
    }
    // The batch's timer must not keep an otherwise finished process alive; "exit" flushes what is left.
    this.scheduled ??= setImmediate(this.flushLater).unref();
  }

  flushSync(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.lines.length === 0) return;
    const text = this.lines.length === 1 ? this.lines[0]! : this.lines.join("");
    this.lines = [];
    this.bytes = 0;
    this.sink.write(text);
  }
}

const byDescriptor = new Map<number, LineBatch>();

/** The one batched destination of a file descriptor (1: stdout, 2: stderr) in this process. */
export function batchedDescriptor(fd: number): BatchedDestination {
  let batch = byDescriptor.get(fd);
  if (batch === undefined) {
    const created = new LineBatch(pino.destination({ dest: fd, sync: true }));
    process.once("exit", () => created.flushSync());
    byDescriptor.set(fd, created);
    batch = created;
  }
  return batch;
}
