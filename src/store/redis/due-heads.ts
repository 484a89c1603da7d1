/**
 * The head of each partition's due queue as last read, so that the expiry
 * scheduler's frequent looks (nextDue, expireDue) cost a round trip only to
 * the partitions that may have changed instead of one to every partition
 * on every look. A head is read again when it is older than REFRESH_MS; an
 * expireDue sets it from the script's reply
 * (the queue's head once it ran), and this process's creates, extends and
 * updates lower it to the session's expire time (lower). Another process's
 * write that lowers a head appends a due wake-up, after which every head is
 * read again (forget, from RedisStore.waitDue). REFRESH_MS bounds what a
 * missed or late wake-up can cost.
 */
import type { DueInfo } from "../store.js";

/** Longest time a partition's head is trusted: bounds the extra lag of a session another process created. */
export const DUE_HEAD_REFRESH_MS = 100;

interface Head {
  readonly dueAt: number | undefined;
  /** The store's clock when read. */
  readonly now: number;
  /** This process's clock when read. */
  readonly readAt: number;
}

export class DueHeads {
  private readonly heads: (Head | undefined)[];

  constructor(count: number) {
    this.heads = new Array<Head | undefined>(count).fill(undefined);
  }

  /** Partitions whose head must be read again now. */
  stale(localNow: number): number[] {
    const out: number[] = [];
    this.heads.forEach((head, p) => {
      if (head === undefined || localNow - head.readAt >= DUE_HEAD_REFRESH_MS) out.push(p);
    });
    return out;
  }

  set(partition: number, dueAt: number | undefined, now: number, localNow: number): void {
    this.heads[partition] = { dueAt, now, readAt: localNow };
  }

  /** Every head is read again at the next look. */
  forget(): void {
    this.heads.fill(undefined);
  }

  /** A session of the partition is due at `dueAt`: the head is at most that (a head not read yet is read anyway). */
  lower(partition: number, dueAt: number): void {
    const head = this.heads[partition];
    if (head === undefined || (head.dueAt !== undefined && head.dueAt <= dueAt)) return;
    this.heads[partition] = { ...head, dueAt };
  }

  /** The earliest head, with the store clock carried forward to `localNow`. */
  earliest(localNow: number): DueInfo {
    let best: DueInfo | undefined;
    for (const head of this.heads) {
      if (head === undefined) continue;
      const info = { dueAt: head.dueAt, now: head.now + (localNow - head.readAt) };
      if (best === undefined || (info.dueAt !== undefined && (best.dueAt === undefined || info.dueAt < best.dueAt))) best = info;
    }
    return best ?? { dueAt: undefined, now: Date.now() };
  }

  /** Partitions with something due by now, or whose head is unknown or older than REFRESH_MS (not known to have nothing due). */
  due(localNow: number): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.heads.length; p++) {
      const head = this.heads[p];
      if (head === undefined || localNow - head.readAt >= DUE_HEAD_REFRESH_MS || (head.dueAt !== undefined && head.dueAt <= head.now + (localNow - head.readAt))) out.push(p);
    }
    return out;
  }
}
