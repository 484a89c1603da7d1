/**
 * In-process publish/subscribe of session lifecycle events.
 *
 * The SessionManager publishes one event after each successful write; watch
 * streams subscribe. Delivery is synchronous and in publish order, so a
 * subscriber sees the events of this process exactly in the order they were
 * published, and the sequence number doubles as a (per-process) stream cursor.
 *
 * This is the first version: it only sees the writes of this process. A later
 * version rebuilds watching on Redis streams so every process sees every event.
 */
import type { Logger } from "pino";
import type { SessionRecord } from "../session/model.js";

/** What happened to a session. */
export type SessionEventType = "created" | "updated" | "extended" | "closed" | "expired" | "data_changed";

/** Every event type, in the order of the proto enum. */
export const SESSION_EVENT_TYPES: readonly SessionEventType[] = [
  "created",
  "updated",
  "extended",
  "closed",
  "expired",
  "data_changed",
];

export interface SessionEvent {
  readonly type: SessionEventType;
  /**
   * The session after the event. Carries the metadata (watchers may send it to
   * their caller) but never data values; never log it.
   */
  readonly session: SessionRecord;
  /** When the event was published, ms since the epoch. */
  readonly time: number;
  /**
   * For data_changed: the keys written or deleted. Empty for ClearSessionData,
   * which means "every key".
   */
  readonly dataKeys: readonly string[];
}

/** An event as delivered: with its position in this process's event sequence. */
export interface PublishedSessionEvent extends SessionEvent {
  /** 1 for the first event this bus published, then +1 per event. */
  readonly seq: number;
}

export type SessionEventListener = (event: PublishedSessionEvent) => void;

export interface SessionEventBusOptions {
  /** Where failing listeners are reported (without event contents). */
  readonly logger?: Logger;
}

export class SessionEventBus {
  private readonly listeners = new Set<SessionEventListener>();
  private seq = 0;
  private readonly logger: Logger | undefined;

  constructor(options: SessionEventBusOptions = {}) {
    this.logger = options.logger;
  }

  /** The sequence number of the last published event; 0 before the first. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Number of current subscribers: publishers may skip work nobody would see. */
  get subscriberCount(): number {
    return this.listeners.size;
  }

  /**
   * Delivers the event to every current subscriber, synchronously. A listener
   * that throws is logged and skipped: the write that produced the event has
   * already succeeded and must not be reported as failed.
   */
  publish(event: SessionEvent): PublishedSessionEvent {
    this.seq += 1;
    const published: PublishedSessionEvent = { ...event, seq: this.seq };
    for (const listener of [...this.listeners]) {
      try {
        listener(published);
      } catch (error) {
        this.logger?.warn({ errName: errorName(error), eventType: event.type, seq: published.seq }, "session event listener failed");
      }
    }
    return published;
  }

  /** Adds a listener; returns the function that removes it (safe to call twice). */
  subscribe(listener: SessionEventListener): () => void {
    // Wrap so that the same function subscribed twice is two subscriptions.
    const entry: SessionEventListener = (event) => listener(event);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}
