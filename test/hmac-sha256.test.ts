/**
 * The prepared HMAC-SHA256 (src/crypto/hmac-sha256.ts) gives createHmac's
 * bytes: random keys (shorter than, as long as and longer than a block) and
 * messages (empty, within a block, across block boundaries, past the kept
 * buffer, non-ASCII and lone surrogates), one key over many messages in turn.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, randomBytes, randomInt } from "node:crypto";
import { HmacSha256 } from "../src/crypto/hmac-sha256.js";

const ALPHABET = ["a", "Z", "0", '"', "\u00e9", "\u20ac", "\u{1F600}", "\ud800", "\n", "\u0000"];

function randomText(units: number): string {
  let text = "";
  while (text.length < units) text += ALPHABET[randomInt(ALPHABET.length)];
  return text;
}

const expected = (key: Buffer, message: string, encoding: "base64url" | "binary"): string => createHmac("sha256", key).update(message, "utf8").digest(encoding);

describe("prepared HMAC-SHA256", () => {
  test("matches createHmac for random keys and messages, in both encodings", () => {
    const lengths = [0, 1, 31, 55, 56, 63, 64, 65, 119, 120, 128, 200, 1000, 1400, 4096, 5000, 20_000];
    for (const keyBytes of [1, 16, 32, 63, 64, 65, 100, 200]) {
      for (let k = 0; k < 8; k++) {
        const key = randomBytes(keyBytes);
        const mac = new HmacSha256(key);
        for (const units of [...lengths, ...Array.from({ length: 20 }, () => randomInt(300))]) {
          const message = randomText(units);
          assert.equal(mac.digest(message, "base64url"), expected(key, message, "base64url"), `key ${keyBytes} bytes, message ${units} units`);
          assert.equal(mac.digest(message, "binary"), expected(key, message, "binary"), `key ${keyBytes} bytes, message ${units} units`);
        }
      }
    }
  });

  test("a long message, then short ones: what the longer left in the buffer never reaches a later MAC", () => {
    const key = randomBytes(32);
    const mac = new HmacSha256(key);
    for (const message of ["x".repeat(3000), "", "short", "\u20ac".repeat(1500), "y", "z".repeat(9000), ""]) {
      assert.equal(mac.digest(message, "base64url"), expected(key, message, "base64url"));
    }
  });

  test("an all-zero key and a key of block length with high bytes", () => {
    for (const key of [Buffer.alloc(32), Buffer.alloc(64, 0xff), Buffer.alloc(0)]) {
      const mac = new HmacSha256(key);
      for (const message of ["", "sessiond", randomText(130)]) assert.equal(mac.digest(message, "binary"), expected(key, message, "binary"));
    }
  });
});
