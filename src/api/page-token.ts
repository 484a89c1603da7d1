/**
 * ListSessions page tokens: the store's ListCursor, made opaque.
 *
 * The token is base64url of "<expireTime>.<sessionId>". Clients must treat it
 * as opaque; it is not signed because it grants nothing: it only says where a
 * listing of the caller's own tenant resumes.
 */
import type { ListCursor } from "../store/store.js";
import type { EndedPosition } from "../domain/ended-archive.js";
import { SessionError } from "../domain/errors.js";

const TOKEN_ALPHABET = /^[A-Za-z0-9_-]+$/;
const CURSOR_TEXT = /^(\d{1,16})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function encodePageToken(cursor: ListCursor): string {
  return Buffer.from(`${cursor.expireTime}.${cursor.sessionId}`, "utf8").toString("base64url");
}

/** undefined for an empty token (the first page); invalid_argument for anything not made by encodePageToken. */
export function decodePageToken(token: string): ListCursor | undefined {
  if (token === "") return undefined;
  const invalid = new SessionError("invalid_argument", "page_token: is not a token from a previous ListSessions response", "page_token");
  // Node's base64url decoder skips characters outside the alphabet; reject them first.
  if (token.length > 128 || !TOKEN_ALPHABET.test(token)) throw invalid;
  const match = CURSOR_TEXT.exec(Buffer.from(token, "base64url").toString("utf8"));
  const expireTime = Number(match?.[1]);
  const sessionId = match?.[2];
  if (sessionId === undefined || !Number.isSafeInteger(expireTime)) throw invalid;
  return { expireTime, sessionId };
}

/**
 * ListEndedSessions page tokens: base64url of "e.<endTime>.<sessionId>" (the
 * "e." keeps them apart from ListSessions tokens). Like those, they grant
 * nothing: the listing stays within the caller's tenant and filter.
 */
const ENDED_TEXT = /^e\.(\d{1,16})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function encodeEndedPageToken(position: EndedPosition): string {
  return Buffer.from(`e.${position.endTime}.${position.sessionId}`, "utf8").toString("base64url");
}

/** undefined for an empty token (the first page); invalid_argument for anything not made by encodeEndedPageToken. */
export function decodeEndedPageToken(token: string): EndedPosition | undefined {
  if (token === "") return undefined;
  const invalid = new SessionError("invalid_argument", "page_token: is not a token from a previous ListEndedSessions response", "page_token");
  if (token.length > 128 || !TOKEN_ALPHABET.test(token)) throw invalid;
  const match = ENDED_TEXT.exec(Buffer.from(token, "base64url").toString("utf8"));
  const endTime = Number(match?.[1]);
  const sessionId = match?.[2];
  if (sessionId === undefined || !Number.isSafeInteger(endTime)) throw invalid;
  return { endTime, sessionId };
}
