/**
 * Event ids, which are also the watch cursors: Redis stream ids "<ms>-<seq>",
 * used by both stores so that a cursor means the same thing on either.
 * Ordered by (ms, seq) as numbers, never as strings ("9-0" < "10-0").
 */
import { SessionError } from "../session/errors.js";

/** The position before the first event. */
export const ZERO_EVENT_ID = "0-0";

export interface EventIdParts {
  readonly ms: number;
  readonly seq: number;
}

const FORMAT = /^(\d{1,16})-(\d{1,16})$/;

/** undefined when the text is not an event id. */
export function parseEventId(text: string): EventIdParts | undefined {
  const match = FORMAT.exec(text);
  if (match === null) return undefined;
  const ms = Number(match[1]);
  const seq = Number(match[2]);
  if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(seq)) return undefined;
  return { ms, seq };
}

/** The parsed cursor, or invalid_argument naming the request field. */
export function parseCursor(text: string, field = "resume_cursor"): EventIdParts {
  const parts = parseEventId(text);
  if (parts === undefined) {
    throw new SessionError("invalid_argument", `${field}: must be a cursor returned by WatchSessions`, field);
  }
  return parts;
}

export function formatEventId(parts: EventIdParts): string {
  return `${parts.ms}-${parts.seq}`;
}

/** Negative, 0 or positive as a is before, equal to or after b. Both must be valid ids. */
export function compareEventIds(a: string, b: string): number {
  const x = parseEventId(a);
  const y = parseEventId(b);
  if (x === undefined || y === undefined) throw new Error("compareEventIds: not an event id");
  return x.ms - y.ms || x.seq - y.seq;
}

/** The later of two ids. */
export function maxEventId(a: string, b: string): string {
  return compareEventIds(a, b) >= 0 ? a : b;
}

/** The ms part of an id: when the event was recorded. */
export function eventIdTime(id: string): number {
  return parseEventId(id)?.ms ?? 0;
}

/**
 * Whether every event after `cursor` is still in a log whose retained events
 * start at `first` (undefined when none is retained) and whose last assigned id
 * is `last`, given whether any event was ever dropped. Redis does not record
 * the largest trimmed id, so a cursor just before the first retained event is
 * judged conservatively: only one equal to or after `first` is known to be
 * complete once anything was dropped. Both stores apply this same rule.
 */
export function cursorRetained(cursor: string, first: string | undefined, last: string, dropped: boolean): boolean {
  if (compareEventIds(cursor, last) > 0) return false;
  if (!dropped) return true;
  if (first === undefined) return compareEventIds(cursor, last) === 0;
  return compareEventIds(cursor, first) >= 0;
}
