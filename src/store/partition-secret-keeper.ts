/**
 * Keeps the partition secret (partition-secret.ts) in Redis while the process
 * runs. After Redis lost its data (every primary flushed, or restarted empty)
 * the running processes still hold the secret, but Redis holds no copy: the
 * next process to start would make a new one and place users apart from the
 * sessions the running ones create. So each running process checks partition
 * 0's copy (the one a start's SET NX decides on) and, finding it gone, writes
 * its own back with SET NX, then the other partitions' copies: a process that
 * starts afterwards opens the same secret.
 *
 * The trigger is a timer reading one key (one GET per interval, whatever the
 * partition count), plus a check as soon as the store's connections are ready
 * again (a primary restarted empty). A FLUSHALL changes no connection and
 * sends no keyspace event, so only reading the key sees it; partition 0's copy
 * is the one that matters most, since a start reads it first. Every
 * FULL_CHECK_EVERY checks, and at every readiness, the keeper reads every
 * partition's copy and writes back those gone: a primary other than partition
 * 0's that lost its data (or one flushed after a restore here) would otherwise
 * wait for the next start, and a later loss of partition 0's copy would find
 * none to recover from.
 *
 * A split: partition 0 holds a secret other than this process's (a process
 * started after the loss and made a new one before any check here restored
 * ours). Sessions this process would place are not where the others look, so
 * while it lasts the process refuses what places users (SealedStore), reports
 * itself not ready, logs it (never a value) and sets
 * sessiond_partition_secret_split. Restarting the process ends it.
 */
import type { Logger } from "pino";
import type { FieldCipher } from "../crypto/field-cipher.js";
import { countPartitionSecretRestored, setPartitionSecretSplit } from "../observability/metrics.js";
import { openCopy, restoreCopies, SECRET_CHECK_INTERVAL_MS, type PartitionSecretCopies } from "./partition-secret.js";

/** Checks between two that read every partition's copy: a GET per partition each FULL_CHECK_EVERY intervals. */
export const FULL_CHECK_EVERY = 10;

/** What one check found. */
export type SecretCheck =
  /** Partition 0 holds this process's secret. */
  | "held"
  /** Partition 0's copy was gone: this process wrote its own back. */
  | "restored"
  /** Partition 0 holds this process's secret; other partitions' copies were gone and were written back. */
  | "repaired"
  /** Partition 0 holds another secret. */
  | "split"
  /** Partition 0's copy does not open with the configured keys (a rotation without `npm run reencrypt`'s order). */
  | "unreadable"
  /** Redis did not answer: nothing is known. */
  | "unknown";

/** Whether this process's secret differs from Redis's, watchable (a readiness condition). */
export class PartitionSecretSplit {
  #split = false;
  readonly #listeners = new Set<() => void>();

  get split(): boolean {
    return this.#split;
  }

  set(split: boolean): void {
    if (split === this.#split) return;
    this.#split = split;
    setPartitionSecretSplit(split);
    for (const listener of [...this.#listeners]) listener();
  }

  /** Calls the listener when `split` changes; returns the remover. */
  watch(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

export interface PartitionSecretKeeperOptions {
  readonly intervalMs?: number;
  readonly logger?: Logger | undefined;
  /** The store's connection readiness (SessionStore.watchReadiness): a check each time it turns ready. */
  readonly watchReadiness?: ((listener: (ready: boolean) => void) => () => void) | undefined;
  /** Where the split is reported (a readiness condition reads it); one of its own when absent. */
  readonly split?: PartitionSecretSplit | undefined;
}

export class PartitionSecretKeeper {
  readonly split: PartitionSecretSplit;
  readonly #copies: PartitionSecretCopies;
  readonly #cipher: FieldCipher;
  readonly #secret: Buffer;
  readonly #sealed: string;
  readonly #logger: Logger | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #unwatchReadiness: (() => void) | undefined;
  /** The copy last seen holding this process's secret: the same string again needs no decryption. */
  #lastHeld: string;
  #running: Promise<SecretCheck> | undefined;
  #lastResult: SecretCheck = "held";
  /** Checks since the last that read every copy. */
  #sinceFull = 0;
  /** The next check reads every copy (the connections turned ready: a primary may have restarted empty). */
  #fullNext = false;

  constructor(copies: PartitionSecretCopies, cipher: FieldCipher, held: { secret: Buffer; sealed: string }, options: PartitionSecretKeeperOptions = {}) {
    this.#copies = copies;
    this.#cipher = cipher;
    this.#secret = held.secret;
    this.#sealed = held.sealed;
    this.#lastHeld = held.sealed;
    this.#logger = options.logger;
    this.split = options.split ?? new PartitionSecretSplit();
    this.#timer = setInterval(() => void this.check(), options.intervalMs ?? SECRET_CHECK_INTERVAL_MS);
    this.#timer.unref();
    this.#unwatchReadiness = options.watchReadiness?.((ready) => {
      if (!ready) return;
      this.#fullNext = true;
      void this.check();
    });
  }

  /** One check (joined by callers while it runs); never rejects. */
  check(): Promise<SecretCheck> {
    this.#running ??= this.#check()
      .catch((): SecretCheck => "unknown")
      .then((result) => {
        this.#running = undefined;
        this.#report(result);
        return result;
      });
    return this.#running;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#unwatchReadiness?.();
  }

  async #check(): Promise<SecretCheck> {
    let copy = await this.#copies.readOne(0);
    if (copy === undefined) return "unknown";
    let wrote = false;
    if (copy === null) {
      await this.#copies.writeIfAbsent(0, this.#sealed);
      wrote = true;
      copy = await this.#copies.readOne(0);
      if (copy === undefined || copy === null) return "unknown";
    }
    const found = this.#compare(copy);
    if (found !== "held") return found;
    const full = wrote || this.#fullNext || ++this.#sinceFull >= FULL_CHECK_EVERY;
    if (!full) return "held";
    this.#sinceFull = 0;
    this.#fullNext = false;
    // Partition 0 holds ours; the others follow it.
    const restored = await restoreCopies(this.#copies, copy);
    if (wrote) return "restored";
    return restored > 0 ? "repaired" : "held";
  }

  #compare(copy: string): SecretCheck {
    if (copy === this.#lastHeld) return "held";
    let secret: Buffer;
    try {
      secret = openCopy(this.#cipher, copy, this.#copies.keyName(0));
    } catch {
      return "unreadable";
    }
    if (!secret.equals(this.#secret)) return "split";
    this.#lastHeld = copy;
    return "held";
  }

  /** Logs and counts what changed (a state once, not every interval it lasts). */
  #report(result: SecretCheck): void {
    const key = this.#copies.keyName(0);
    if (result === "restored") {
      countPartitionSecretRestored();
      this.#logger?.warn({ key }, "the partition secret was gone from Redis (Redis lost its data): restored from this process's copy");
    }
    if (result === "repaired") {
      countPartitionSecretRestored();
      this.#logger?.warn({ key }, "some partitions' copies of the partition secret were gone (a primary lost its data): written back from partition 0's");
    }
    if (result === "split" && this.#lastResult !== "split") {
      this.#logger?.error(
        { key },
        "the partition secret in Redis is not this process's (Redis lost its data and another process made a new one before this one restored it): " +
          "this process refuses creating sessions and listing by user, and reports not ready; restart it",
      );
    }
    if (result === "unreadable" && this.#lastResult !== "unreadable") {
      this.#logger?.error({ key }, "the partition secret in Redis does not open with ENCRYPTION_KEYS: keep the key it was sealed under configured");
    }
    if ((result === "held" || result === "repaired") && this.#lastResult === "split") this.#logger?.info({ key }, "the partition secret in Redis is this process's again");
    if (result !== "unknown") this.split.set(result === "split");
    if (result !== "unknown") this.#lastResult = result;
  }
}
