/**
 * Event ids, which are also the watch cursors: Redis stream ids "<ms>-<seq>",
 * used by both stores so that a cursor means the same thing on either.
 * Ordered by (ms, seq) as numbers, never as strings ("9-0" < "10-0").
 */
import { SessionError } from "../domain/errors.js";

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

/**
 * Negative, 0 or positive as a is before, equal to or after b. Both must be
 * valid ids (cursors from clients pass parseCursor first). It runs once per
 * event and watcher, so it splits at the dash instead of matching FORMAT.
 */
export function compareEventIds(a: string, b: string): number {
  const x = a.indexOf("-");
  const y = b.indexOf("-");
  const ms = idPart(a, 0, x) - idPart(b, 0, y);
  const seq = idPart(a, x + 1, a.length) - idPart(b, y + 1, b.length);
  return ms !== 0 ? ms : seq;
}

/** The number in id[start, end), which must be 1 to 16 digits. */
function idPart(id: string, start: number, end: number): number {
  const n = end - start > 0 && end - start <= 16 ? Number(id.slice(start, end)) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new Error("compareEventIds: not an event id");
  return n;
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
