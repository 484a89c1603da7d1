/**
 * The ChaCha20-Poly1305 seal: libsodium's and node:crypto's give the same
 * bytes and open each other's (so the node:crypto fallback reads what
 * libsodium wrote), RFC 8439's test vector, and a changed byte anywhere
 * fails to open.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { aead, nodeAead, sodiumAeadIfLoaded, TAG_BYTES, type Aead } from "../src/crypto/chacha20-poly1305.js";

function sealed(with_: Aead, message: Buffer, additional: Buffer, nonce: Buffer, key: Buffer): Buffer {
  const out = Buffer.alloc(message.length + TAG_BYTES);
  with_.seal(out, message, additional, nonce, key);
  return out;
}

describe("ChaCha20-Poly1305", () => {
  test("libsodium loads here (the prebuilt addon is installed by npm ci), and is the one used", () => {
    assert.ok(sodiumAeadIfLoaded !== undefined);
    assert.equal(aead.name, "libsodium");
  });

  test("RFC 8439 section 2.8.2's test vector, with both implementations", () => {
    const key = Buffer.from("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f", "hex");
    const nonce = Buffer.from("070000004041424344454647", "hex");
    const additional = Buffer.from("50515253c0c1c2c3c4c5c6c7", "hex");
    const message = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");
    const expected =
      "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116" +
      "1ae10b594f09e26a7e902ecbd0600691";
    for (const implementation of [nodeAead, sodiumAeadIfLoaded ?? nodeAead]) {
      assert.equal(sealed(implementation, message, additional, nonce, key).toString("hex"), expected, implementation.name);
    }
  });

  test("random messages: the same bytes from both, each opens the other's, and any changed byte, nonce, key or associated data fails", () => {
    const sodium = sodiumAeadIfLoaded;
    assert.ok(sodium !== undefined);
    for (let round = 0; round < 200; round++) {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const message = randomBytes(randomInt(0, round < 100 ? 300 : 70_000));
      const additional = randomBytes(randomInt(0, 120));
      const bySodium = sealed(sodium, message, additional, nonce, key);
      assert.deepEqual(sealed(nodeAead, message, additional, nonce, key), bySodium);
      assert.deepEqual(nodeAead.open(bySodium, additional, nonce, key), message);
      assert.deepEqual(sodium.open(bySodium, additional, nonce, key), message);
      const changed = Buffer.from(bySodium);
      const at = randomInt(changed.length);
      changed[at] = (changed[at] as number) ^ (1 << randomInt(8));
      for (const implementation of [nodeAead, sodium]) {
        assert.equal(implementation.open(changed, additional, nonce, key), undefined);
        assert.equal(implementation.open(bySodium, Buffer.concat([additional, Buffer.of(0)]), nonce, key), undefined);
        assert.equal(implementation.open(bySodium, additional, randomBytes(12), key), undefined);
        assert.equal(implementation.open(bySodium, additional, nonce, randomBytes(32)), undefined);
        assert.equal(implementation.open(bySodium.subarray(0, TAG_BYTES - 1), additional, nonce, key), undefined);
      }
    }
  });
});
