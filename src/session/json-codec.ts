/**
 * How the session layer stores JSON: metadata as the JSON text of an object,
 * data values as the JSON text of any JSON value.
 *
 * Errors raised here never quote the text they failed on: metadata and data
 * values are the caller's data and must not reach logs or error messages.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { SessionError } from "../domain/errors.js";

/** The stored form of "no metadata". */
export const EMPTY_METADATA = "{}";

/**
 * Serializes a JSON value. `field` names the request field for the
 * invalid_argument error raised on numbers JSON cannot represent (NaN and
 * Infinity arrive through protobuf's double-typed google.protobuf.Value, and
 * JSON.stringify would silently turn them into null).
 */
export function encodeJson(value: JsonValue, field: string): string {
  // Without a replacer JSON.stringify stays on V8's fast path; a non-finite number comes out as "null", so only
  // a text holding "null" is encoded again through the replacer that refuses one (the text is the same otherwise).
  const text = JSON.stringify(value);
  if (!text.includes("null")) return text;
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new SessionError("invalid_argument", `${field}: numbers must be finite (NaN and Infinity are not JSON)`, field);
    }
    return v;
  });
}

/** Size of the serialized form, in UTF-8 bytes: what the limits are expressed in. */
export function jsonByteLength(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** Parses stored metadata. Throws a plain Error (an internal fault) when the store holds something else. */
export function decodeMetadata(text: string): JsonObject {
  const value = parseStored(text, "metadata");
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("stored metadata is not a JSON object");
  }
  return value;
}

/** Parses a stored data value. Throws a plain Error (an internal fault) on invalid JSON. */
export function decodeValue(text: string): JsonValue {
  return parseStored(text, "data value");
}

/**
 * Merges `patch` into `base` at the top level: a key whose patch value is null
 * is removed, any other value replaces the key's value. Neither input changes.
 */
export function mergeMetadata(base: JsonObject, patch: JsonObject): JsonObject {
  // A Map and Object.fromEntries rather than `obj[key] = value`, so that a key
  // named "__proto__" is an ordinary key and never touches the prototype.
  const merged = new Map<string, JsonValue>(Object.entries(base));
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      merged.delete(key);
    } else {
      merged.set(key, value);
    }
  }
  return Object.fromEntries(merged) as JsonObject;
}

function parseStored(text: string, what: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    // V8's SyntaxError quotes the text; replace it.
    throw new Error(`stored ${what} is not valid JSON`);
  }
}
