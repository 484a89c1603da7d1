/**
 * Generated JSON values for the tests that compare our protobuf encoding and
 * decoding with protobuf-es's (session-encoding, session-decoding): strings
 * made of the given pieces, objects with the given keys (set as own
 * properties, so "__proto__" is a key like any other), numbers from a list.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/** A deterministic generator, so a failure names its seed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface JsonMaterial {
  readonly pieces: readonly string[];
  readonly keys: readonly string[];
  readonly numbers: readonly number[];
}

export interface JsonGenerator {
  text(next: () => number): string;
  jsonValue(next: () => number, depth: number): JsonValue;
  jsonObject(next: () => number, depth: number): JsonObject;
}

export function jsonGenerator(material: JsonMaterial): JsonGenerator {
  const { pieces, keys, numbers } = material;
  const pick = <T>(next: () => number, from: readonly T[]): T => from[Math.floor(next() * from.length)] as T;
  const text = (next: () => number): string => {
    let out = "";
    const parts = Math.floor(next() * 4);
    for (let i = 0; i < parts; i++) out += pick(next, pieces);
    return out;
  };
  const jsonValue = (next: () => number, depth: number): JsonValue => {
    switch (Math.floor(next() * (depth > 3 ? 4 : 6))) {
      case 0:
        return pick(next, numbers);
      case 1:
        return text(next);
      case 2:
        return next() < 0.5;
      case 3:
        return null;
      case 4:
        return Array.from({ length: Math.floor(next() * 4) }, () => jsonValue(next, depth + 1));
      default:
        return jsonObject(next, depth + 1);
    }
  };
  const jsonObject = (next: () => number, depth: number): JsonObject => {
    const object: JsonObject = {};
    const size = Math.floor(next() * 5);
    for (let i = 0; i < size; i++) {
      const key = next() < 0.7 ? pick(next, keys) : text(next);
      Object.defineProperty(object, key, { value: jsonValue(next, depth), enumerable: true, configurable: true, writable: true });
    }
    return object;
  };
  return { text, jsonValue, jsonObject };
}
