/**
 * The one event reader of a process: a single blocking read loop on the
 * store's event log (Redis: XREAD BLOCK on a dedicated connection) that fans
 * every event out to the watch streams of this process and to in-process
 * listeners (the expiry scheduler). However many watchers a process holds, it
 * costs Redis one connection and one read per batch of events.
 *
 * Delivery to a watcher is synchronous and in log order, into the watcher's
 * own bounded queue, and only for events of the watcher's tenant that pass its
 * filter: another tenant's event never reaches a watcher's queue. A watcher
 * that falls behind overflows its queue; the hub then drops it and the watch
 * ends with RESOURCE_EXHAUSTED and its cursor.
 *
 * Listeners hear each entry's head only (EventHead), and an entry is decoded
 * whole only when a watcher of its tenant is registered at its dispatch
 * (TailEntry): a process that watches nothing pays for the log's transfer
 * and the heads, not for decoding and opening every event. An entry found
 * unreadable then reaches no watcher, and the position passes it.
 *
 * Watchers of a tenant with the same filter (the same `filterKey`) form one
 * group, and the filter runs once per event and group rather than once per
 * watcher: thousands of watchers asking for the same sessions cost one match.
 *
 * `position` is the id of the last event dispatched: everything up to it has
 * been offered to every subscriber, which is what lets an idle watcher's
 * heartbeat carry it even when every event was filtered out.
 *
 * With `idleMs` set, a hub that has had no watcher and no listener for that
 * long stops reading (a process that holds no watch would otherwise pay for
 * every write made anywhere). `awake()` resumes it at the log's end before a
 * watch registers; positions of the time before the pause are forgotten,
 * since the log moved on without this hub. A paused hub still looks at the
 * log every `pausedCheckMs` for a reset, so that data loss is logged, audited
 * and counted by a process with no watcher too, and follows the log's end
 * there (its position never falls out of retention while paused).
 *
 * When a read fails (Redis away) the loop retries with backoff from the same
 * position, so nothing is skipped within retention. If the position fell out of
 * retention meanwhile, every watcher is ended with UNAVAILABLE (its resume then
 * answers OUT_OF_RANGE, telling the client to re-list) and the hub restarts at
 * the log's end. If the log was reset (the store lost its data: a cursor of
 * an older generation), every watcher is ended with OUT_OF_RANGE and the
 * reset listeners are told (log, audit, metric).
 */
import type { Logger } from "pino";
import { setImmediate as setImmediatePromise, setTimeout as sleep } from "node:timers/promises";
import { isSessionError, SessionError } from "../domain/errors.js";
import { compareEventIds, ZERO_EVENT_ID } from "../store/event-id.js";
import type { UnreadableEntry } from "../store/unreadable.js";
import { UnreadableEvents, unreadableEventError } from "./poison.js";
import { EVENT_LOG_RESET_MESSAGE, type EventHead, type EventTail, type SessionStore, type StoredEvent, type TailEntry } from "../store/store.js";
import { decodedEntry } from "../store/tail-entry.js";
import { EventQueue } from "./event-queue.js";

export interface EventHubOptions {
  readonly store: Pick<SessionStore, "lastEventId" | "readEvents" | "openEventTail" | "onUnreadableEvent">;
  readonly logger?: Logger;
  /** Longest single blocking read (default 1000 ms); also bounds how long stop() waits. */
  readonly blockMs?: number;
  /** A reader failing for this long (while retrying) is stalled: health says NOT_SERVING (default 5000 ms). */
  readonly stallMs?: number;
  /** Most events per read (default 500). */
  readonly batchSize?: number;
  /** Watchers offered an event before the dispatch lets the event loop turn (default 500; see dispatch). */
  readonly dispatchSlice?: number;
  /** With no watcher and no listener for this long, the reader pauses until `awake()` (default: never pauses). */
  readonly idleMs?: number;
  /** While paused, how often the hub looks for a reset of the log (default 1000 ms): two reads, not one per event. */
  readonly pausedCheckMs?: number;
}

/** An in-process listener of every event (all tenants; its head only), called synchronously. Must not throw. */
export type EventListener = (event: EventHead) => void;

/**
 * Takes a matching event straight to the watcher's stream and returns true,
 * or returns false when it cannot (the event is then queued).
 */
export type DirectDelivery = (event: StoredEvent) => boolean;

/** One watcher's registration: its queue and how it leaves. */
export interface HubSubscription {
  readonly queue: EventQueue<StoredEvent>;
  /**
   * While set, matching events go to `deliver` first as long as the queue is
   * empty (so that nothing overtakes a queued event). The watcher sets it
   * while it waits, and clears it while it runs.
   */
  deliverDirectly(deliver: DirectDelivery | undefined): void;
  /** Removes the registration (safe to call twice). */
  close(): void;
}

/** The watchers of one tenant with one filter. */
interface Group {
  readonly tenant: string;
  readonly key: unknown;
  readonly matches: (event: StoredEvent) => boolean;
  readonly subs: Set<Subscriber>;
}

interface Subscriber {
  /** Its group; replaced when the group emptied (and was dropped) before the watcher joined it (see admitJoining). */
  group: Group;
  /** Whether the watcher asked for this very session: only those hear of its unreadable events (INTERNAL). */
  readonly concerns: (sessionId: string) => boolean;
  readonly queue: EventQueue<StoredEvent>;
  direct: DirectDelivery | undefined;
}

const DEFAULT_BLOCK_MS = 1000;
const DEFAULT_BATCH = 500;
/**
 * Longest pause between attempts after a failed read. Each attempt waits for
 * the store's connection (bounded by its command timeout) rather than failing
 * at once, so a short pause costs Redis nothing and resumes delivery soon
 * after Redis answers again.
 */
const MAX_BACKOFF_MS = 200;
const DEFAULT_DISPATCH_SLICE = 500;
const DEFAULT_STALL_MS = 5000;
const DEFAULT_PAUSED_CHECK_MS = 1000;

export class EventHub {
  private readonly store: EventHubOptions["store"];
  private readonly logger: Logger | undefined;
  private readonly blockMs: number;
  private readonly batchSize: number;
  private readonly dispatchSlice: number;
  /** Per tenant, its groups by filter key. */
  private readonly byTenant = new Map<string, Map<unknown, Group>>();
  /** The event being dispatched (across the dispatch's pauses), if any. */
  private dispatching: StoredEvent | undefined;
  /** Watchers registered during a dispatch: offered that event at once, placed in their groups when it ends. */
  private readonly joining = new Set<Subscriber>();
  private readonly listeners = new Set<EventListener>();
  /** undefined until the log's end has been read once (the store may be down at start). */
  private pos: string | undefined;
  /** Per tenant, the id of its newest event dispatched (one entry per tenant seen; tenants are few). */
  private readonly tenantPos = new Map<string, string>();
  private tail: EventTail | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private subscribers = 0;
  private readonly stallMs: number;
  /** When the reader's current run of failures began; undefined while it reads. */
  private failingSince: number | undefined;
  private removeUnreadable: (() => void) | undefined;
  /** Logs and counts unreadable events once (poison.ts); the watch streams report undecryptable ones here too. */
  readonly unreadable: UnreadableEvents;
  /** Whether the last read succeeded (readiness is NOT_SERVING while the reader is not reading). */
  private isReading = false;
  private readonly readingListeners = new Set<(reading: boolean) => void>();
  private readonly resetListeners = new Set<(info: { readonly watchersEnded: number }) => void>();
  private readonly idleMs: number;
  private readonly pausedCheckMs: number;
  /** Since when the hub has had nobody to read for (undefined while it has). */
  private idleSince: number | undefined;
  /** Set while the loop is paused: resumes it. */
  private resumeLoop: (() => void) | undefined;
  private resuming: Promise<void> | undefined;

  constructor(options: EventHubOptions) {
    this.store = options.store;
    this.logger = options.logger;
    this.blockMs = options.blockMs ?? DEFAULT_BLOCK_MS;
    this.batchSize = options.batchSize ?? DEFAULT_BATCH;
    this.dispatchSlice = options.dispatchSlice ?? DEFAULT_DISPATCH_SLICE;
    this.stallMs = options.stallMs ?? DEFAULT_STALL_MS;
    this.idleMs = options.idleMs ?? Number.POSITIVE_INFINITY;
    this.pausedCheckMs = options.pausedCheckMs ?? DEFAULT_PAUSED_CHECK_MS;
    this.unreadable = new UnreadableEvents(options.logger);
  }

  /**
   * Why the reader cannot advance (failing for longer than stallMs), or
   * undefined while it reads: the health monitor reports NOT_SERVING then,
   * because watches on this process would see nothing new.
   */
  get stalled(): string | undefined {
    if (this.failingSince === undefined || this.stopping) return undefined;
    return Date.now() - this.failingSince >= this.stallMs ? "event reader stalled" : undefined;
  }

  /** The id of the last event dispatched to subscribers ("0-0" before the reader knows the log's end). */
  get position(): string {
    return this.pos ?? ZERO_EVENT_ID;
  }

  /**
   * The id of the tenant's newest event this hub dispatched, or undefined if
   * none since it started: what an idle watcher of the tenant may be shown,
   * unlike `position`, which moves with every tenant's writes.
   */
  tenantPosition(tenant: string): string | undefined {
    return this.tenantPos.get(tenant);
  }

  /** Watch streams currently registered (for tests and metrics). */
  get subscriberCount(): number {
    return this.subscribers;
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  get running(): boolean {
    return this.loop !== undefined && !this.stopping;
  }

  /** True while the reader is paused for want of watchers and listeners (see `idleMs`). */
  get paused(): boolean {
    return this.resumeLoop !== undefined;
  }

  /**
   * Resumes a paused reader at the log's current end, so that a watch
   * registering next starts from now rather than from where the hub paused
   * (what came between is the watch's replay, read from the store). Rejects,
   * leaving the hub paused, when the store cannot say where the log ends.
   */
  awake(): Promise<void> {
    if (this.resumeLoop === undefined) return Promise.resolve();
    this.resuming ??= this.store
      .lastEventId()
      .then((end) => {
        if (this.resumeLoop === undefined) return;
        this.pos = end;
        this.resume();
      })
      .finally(() => {
        this.resuming = undefined;
      });
    return this.resuming;
  }

  /** Lets the paused loop go on from the hub's position. */
  private resume(): void {
    const resume = this.resumeLoop;
    this.resumeLoop = undefined;
    this.idleSince = undefined;
    resume?.();
  }

  /** Whether the reader has had nobody to read for through `idleMs` (and so should pause). */
  private idleLongEnough(): boolean {
    if (this.subscribers > 0 || this.listeners.size > 0) {
      this.idleSince = undefined;
      return false;
    }
    const now = Date.now();
    this.idleSince ??= now;
    return now - this.idleSince >= this.idleMs;
  }

  private async pause(): Promise<void> {
    // Nothing dispatched while paused: positions from before would name a past the log has left behind.
    this.tenantPos.clear();
    const resumed = new Promise<boolean>((resolve) => (this.resumeLoop = () => resolve(true)));
    while (!(await Promise.race([resumed, sleep(this.pausedCheckMs, false, { ref: false })]))) await this.checkWhilePaused();
  }

  /**
   * A paused hub's look at the log: a reset since its position is handled as
   * the running reader would (verifyPosition: reset listeners told); without
   * one, the position moves to the end read before the check, so that it
   * stays within retention. A failure leaves it for the next look.
   */
  private async checkWhilePaused(): Promise<void> {
    const pos = this.pos;
    if (pos === undefined || this.stopping) return;
    try {
      const end = await this.store.lastEventId();
      await this.verifyPosition(pos);
      if (this.pos === pos && this.paused) this.pos = end;
    } catch {
      // Redis away: the next look, or the resumed reader, finds out.
    }
  }

  /** True while the reader follows the log: false from a failed read until a read succeeds again. */
  get reading(): boolean {
    return this.isReading;
  }

  /** Calls the listener whenever `reading` flips; returns the remover. */
  watchReading(listener: (reading: boolean) => void): () => void {
    this.readingListeners.add(listener);
    return () => void this.readingListeners.delete(listener);
  }

  private setReading(reading: boolean): void {
    if (reading === this.isReading) return;
    this.isReading = reading;
    for (const listener of [...this.readingListeners]) listener(reading);
  }

  /**
   * Starts reading at the log's current end. With the store unreachable it
   * starts all the same and finds the end once the store answers (watches
   * fail with UNAVAILABLE until then).
   */
  async start(): Promise<void> {
    if (this.loop !== undefined) return;
    this.stopping = false;
    try {
      this.pos = await this.store.lastEventId();
    } catch (error) {
      if (!(isSessionError(error) && error.kind === "unavailable")) throw error;
      this.logger?.warn("event log unreachable at start; the event reader will start when it answers");
    }
    this.tail = this.store.openEventTail();
    this.removeUnreadable = this.store.onUnreadableEvent((entry) => this.onUnreadable(entry));
    this.loop = this.run();
  }

  /**
   * Ends every watcher with UNAVAILABLE (their cursors let them resume on
   * another process), closes the reader connection and waits for the loop.
   */
  async stop(): Promise<void> {
    if (this.stopping) return this.loop;
    this.stopping = true;
    this.endAll(new SessionError("unavailable", "the server is shutting down"));
    this.resume();
    this.tail?.close();
    this.removeUnreadable?.();
    this.removeUnreadable = undefined;
    await this.loop;
    this.loop = undefined;
    this.tail = undefined;
  }

  /**
   * Registers a watcher: from now on every event of `tenant` that `matches`
   * accepts is pushed to its queue, starting after the current position.
   * Watchers given the same `filterKey` (for the same tenant) must have
   * filters that accept the same events: the group's first `matches` decides
   * for all of them. Without a key the watcher is a group of its own.
   */
  subscribe(tenant: string, matches: (event: StoredEvent) => boolean, queueLimit: number, concerns: (sessionId: string) => boolean = () => false, filterKey?: string): HubSubscription {
    if (this.stopping || this.loop === undefined) throw new SessionError("unavailable", "the server is shutting down");
    if (this.pos === undefined) throw new SessionError("unavailable", "the event log is not reachable yet");
    // Without awake() first, the watcher starts where the hub paused: correct, but with the events since.
    if (this.paused) this.resume();
    const group = this.groupOf(tenant, filterKey ?? {}, matches);
    const sub: Subscriber = { group, concerns, queue: new EventQueue<StoredEvent>(queueLimit), direct: undefined };
    this.subscribers += 1;
    const current = this.dispatching;
    if (current === undefined) {
      group.subs.add(sub);
    } else {
      // The dispatch may have passed this group already: the watcher starts before the event, so it gets it now.
      this.joining.add(sub);
      if (current.session.tenant === tenant && group.matches(current)) this.offer(sub, current);
    }
    let open = true;
    return {
      queue: sub.queue,
      deliverDirectly: (deliver) => {
        sub.direct = deliver;
      },
      close: () => {
        if (!open) return;
        open = false;
        sub.queue.close();
        this.remove(sub);
      },
    };
  }

  /** The tenant's group for the key, made (with `matches`) if it has none. */
  private groupOf(tenant: string, key: unknown, matches: (event: StoredEvent) => boolean): Group {
    let groups = this.byTenant.get(tenant);
    if (groups === undefined) {
      groups = new Map();
      this.byTenant.set(tenant, groups);
    }
    let group = groups.get(key);
    if (group === undefined) {
      group = { tenant, key, matches, subs: new Set() };
      groups.set(key, group);
    }
    return group;
  }

  /** After a dispatch: the watchers registered during it join their groups (the group may have been dropped meanwhile). */
  private admitJoining(): void {
    for (const sub of this.joining) {
      const group = this.groupOf(sub.group.tenant, sub.group.key, sub.group.matches);
      sub.group = group;
      group.subs.add(sub);
    }
    this.joining.clear();
  }

  /** Every registered watcher of the tenant (all tenants when undefined), including those still joining. */
  private *registered(tenant?: string): Iterable<Subscriber> {
    const tenants = tenant === undefined ? [...this.byTenant.values()] : [this.byTenant.get(tenant) ?? new Map<unknown, Group>()];
    for (const groups of tenants) for (const group of [...groups.values()]) yield* [...group.subs];
    for (const sub of [...this.joining]) if (tenant === undefined || sub.group.tenant === tenant) yield sub;
  }

  /** Calls the listener each time the reader finds the event log reset (data loss); returns the remover. */
  onReset(listener: (info: { readonly watchersEnded: number }) => void): () => void {
    this.resetListeners.add(listener);
    return () => void this.resetListeners.delete(listener);
  }

  /** Adds an in-process listener of every event; returns its remover. */
  addListener(listener: EventListener): () => void {
    const entry: EventListener = (event) => listener(event);
    this.listeners.add(entry);
    if (this.paused) this.resume();
    return () => void this.listeners.delete(entry);
  }

  private remove(sub: Subscriber): void {
    if (this.joining.delete(sub)) {
      this.subscribers -= 1;
      return;
    }
    const { group } = sub;
    if (!group.subs.delete(sub)) return;
    this.subscribers -= 1;
    if (group.subs.size > 0) return;
    const groups = this.byTenant.get(group.tenant);
    if (groups?.get(group.key) !== group) return;
    groups.delete(group.key);
    if (groups.size === 0) this.byTenant.delete(group.tenant);
  }

  /**
   * An entry of the log that does not decode (reported by the store's reads):
   * logged and counted once; when it is ahead of what this hub dispatched (the
   * live reader met it, or a replay read ahead), the watchers of its very
   * session end with INTERNAL. A replay meeting an old one only skips it, so a
   * resumed watch gets past it.
   */
  private onUnreadable(entry: UnreadableEntry): void {
    this.unreadable.report("event", entry);
    if (entry.tenant === undefined || entry.sessionId === undefined || this.pos === undefined) return;
    if (compareEventIds(entry.id, this.pos) <= 0) return;
    for (const sub of [...this.registered(entry.tenant)]) {
      if (!sub.concerns(entry.sessionId)) continue;
      sub.queue.end(unreadableEventError(entry.sessionId));
      this.remove(sub);
    }
  }

  private endAll(error: SessionError): void {
    for (const sub of [...this.registered()]) {
      sub.queue.end(error);
      this.remove(sub);
    }
  }

  private async run(): Promise<void> {
    let failures = 0;
    let verify = false;
    while (!this.stopping) {
      const tail = this.tail;
      if (tail === undefined) return;
      try {
        if (this.pos === undefined) {
          this.pos = await this.store.lastEventId();
        } else if (verify) {
          await this.verifyPosition(this.pos);
        }
        verify = false;
        if (this.idleLongEnough()) {
          await this.pause();
          continue;
        }
        // Reading from here: the read below waits on a live connection (a dropped one fails it at once).
        this.setReading(true);
        const entries = tail.readEntries !== undefined ? await tail.readEntries(this.pos, this.batchSize, this.blockMs) : (await tail.read(this.pos, this.batchSize, this.blockMs)).map(decodedEntry);
        if (failures > 0) this.logger?.info("event reader recovered");
        failures = 0;
        this.failingSince = undefined;
        for (const entry of entries) {
          if (this.stopping) return;
          await this.dispatch(entry);
        }
      } catch (error) {
        if (this.stopping) return;
        this.setReading(false);
        failures += 1;
        this.failingSince ??= Date.now();
        verify = true;
        if (failures === 1) {
          this.logger?.warn({ errName: error instanceof Error ? error.name : typeof error, errKind: isSessionError(error) ? error.kind : undefined }, "event reader failed; retrying from its position");
        }
        await sleep(Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.min(failures, 5)));
      }
    }
  }

  /**
   * After a failure: if events after our position were trimmed, nobody can be
   * told they are complete. If the log was reset (the store lost its data),
   * every watch ends with OUT_OF_RANGE at once: the sessions they knew may be
   * gone without a CLOSED or EXPIRED event, so their clients must re-list.
   * A position past the log's last entry is such a loss too: the log handed
   * out entries it no longer has (a failover to a replica that lacked them,
   * before any newer entry passed the position).
   */
  private async verifyPosition(pos: string): Promise<void> {
    try {
      await this.store.readEvents(pos, 1);
    } catch (error) {
      if (!(isSessionError(error) && error.kind === "out_of_range")) throw error;
      const next = await this.store.lastEventId();
      if (error.message === EVENT_LOG_RESET_MESSAGE || compareEventIds(pos, next) > 0 || (await this.readsAsReset(pos))) {
        const watchers = this.subscribers;
        this.logger?.error({ watchers, position: pos, newPosition: next }, "the event log was reset: the store lost its data; ending every watch with OUT_OF_RANGE");
        this.endAll(new SessionError("out_of_range", "the event log was reset (the store lost its data): list the sessions and watch again"));
        for (const listener of [...this.resetListeners]) listener({ watchersEnded: watchers });
      } else {
        this.logger?.warn("event reader lost its position (beyond retention); ending every watch so clients re-list");
        this.endAll(new SessionError("unavailable", "the event reader fell behind the event log's retention"));
      }
      this.pos = next;
    }
  }

  /**
   * Whether reading from `pos` now fails as a reset. Asked when the first read
   * found the position past the log's end and the log has since gone past it:
   * the entries the position names may be lost (then this read says so), or
   * merely not written yet when the first read ran.
   */
  private async readsAsReset(pos: string): Promise<boolean> {
    try {
      await this.store.readEvents(pos, 1);
      return false;
    } catch (error) {
      return isSessionError(error) && error.kind === "out_of_range" && error.message === EVENT_LOG_RESET_MESSAGE;
    }
  }

  /**
   * Offers the event to every listener and matching watcher, in slices of
   * `dispatchSlice` watchers with a turn of the event loop in between. Why: a
   * delivery writes to the watcher's HTTP/2 stream at once (here, or in the
   * woken watcher's next step), but Node sends what was written only once the
   * running task ends. Without the pauses, 10k
   * watchers' writes would all leave the process at the end of one long task;
   * with them, the first slices are on the wire (and being read by the
   * clients) while the next ones are prepared. The read loop waits for the
   * whole dispatch, so events still reach every watcher in log order. A
   * watcher registered during a pause gets the event at once (subscribe), and
   * one that leaves is not visited (a Set's iteration skips what was deleted).
   */
  private async dispatch(entry: TailEntry): Promise<void> {
    for (const listener of this.listeners) {
      try {
        listener(entry);
      } catch (error) {
        this.logger?.warn({ errName: error instanceof Error ? error.name : typeof error, eventType: entry.type }, "event listener failed");
      }
    }
    const groups = this.byTenant.get(entry.tenant);
    // The whole event only for a tenant watched here; one that does not decode was reported (onUnreadable) and reaches no watcher.
    const event = groups === undefined ? undefined : entry.event();
    if (groups !== undefined && event !== undefined) {
      this.dispatching = event;
      try {
        let offered = 0;
        for (const group of groups.values()) {
          if (!group.matches(event)) continue;
          for (const sub of group.subs) {
            this.offer(sub, event);
            offered += 1;
            if (offered % this.dispatchSlice === 0) await setImmediatePromise();
          }
        }
      } finally {
        this.dispatching = undefined;
        this.admitJoining();
      }
    }
    this.pos = entry.id;
    this.tenantPos.set(entry.tenant, entry.id);
  }

  /** One watcher whose filter passed the event: straight to its stream when it waits with an empty queue, else to its queue. */
  private offer(sub: Subscriber, event: StoredEvent): void {
    if (sub.direct !== undefined && sub.queue.size === 0 && this.deliverDirectly(sub.direct, event)) return;
    // Too slow: dropped now, so its queue stops growing; the watch sees `overflowed`.
    if (!sub.queue.push(event)) this.remove(sub);
  }

  /** A delivery that throws (a session that cannot be decoded) is queued instead, to fail in its own watch. */
  private deliverDirectly(deliver: DirectDelivery, event: StoredEvent): boolean {
    try {
      return deliver(event);
    } catch {
      return false;
    }
  }
}
