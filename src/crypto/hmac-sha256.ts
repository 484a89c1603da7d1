/**
 * HMAC-SHA256 (RFC 2104) under one key, for many short messages: the key's
 * inner and outer pads are made once, and a message costs two one-shot
 * `crypto.hash` calls. createHmac builds an Hmac object with a native handle
 * per message and its digest a native buffer, which a write paid for again
 * in allocation and garbage collection. The bytes are createHmac's
 * (test/hmac-sha256.test.ts compares them); where `crypto.hash` is missing
 * (Node before 20.12) createHmac computes them.
 */
import * as nodeCrypto from "node:crypto";

const { createHash, createHmac } = nodeCrypto;
/** Absent before Node 20.12 (the namespace keeps the import from failing to link there). */
const oneShot: typeof nodeCrypto.hash | undefined = typeof nodeCrypto.hash === "function" ? nodeCrypto.hash : undefined;

const BLOCK_BYTES = 64;
const DIGEST_BYTES = 32;
/** Longest message whose bytes go through the kept buffer; a longer one gets a buffer of its own. */
const KEPT_MESSAGE_BYTES = 4096;

/** What digest() returns: base64url, or "binary" (latin1: one character per byte). */
export type MacEncoding = "base64url" | "binary";

export class HmacSha256 {
  /** key ^ ipad, then room for a message's bytes. Never from the shared Buffer pool: it holds the key. */
  private inner: Buffer;
  /** key ^ opad, then the inner digest. */
  private readonly outer = Buffer.alloc(BLOCK_BYTES + DIGEST_BYTES, 0x5c);

  constructor(private readonly key: Buffer) {
    const block = key.length > BLOCK_BYTES ? createHash("sha256").update(key).digest() : key;
    this.inner = Buffer.alloc(BLOCK_BYTES + 256, 0x36);
    for (let i = 0; i < block.length; i++) {
      this.inner[i] = 0x36 ^ (block[i] as number);
      this.outer[i] = 0x5c ^ (block[i] as number);
    }
  }

  /** The MAC of the message's UTF-8 bytes. */
  digest(message: string, encoding: MacEncoding): string {
    if (oneShot === undefined) return createHmac("sha256", this.key).update(message, "utf8").digest(encoding);
    // At most 3 UTF-8 bytes per UTF-16 unit: the kept buffer is checked against that bound, the message not measured.
    const most = BLOCK_BYTES + 3 * message.length;
    let buffer = this.inner;
    if (most > buffer.length) {
      // Not from the shared pool either; only the bytes written below are read.
      buffer = Buffer.allocUnsafeSlow(most);
      this.inner.copy(buffer, 0, 0, BLOCK_BYTES);
      if (most <= BLOCK_BYTES + KEPT_MESSAGE_BYTES) this.inner = buffer;
    }
    const written = buffer.write(message, BLOCK_BYTES, "utf8");
    this.outer.write(oneShot("sha256", buffer.subarray(0, BLOCK_BYTES + written), "binary"), BLOCK_BYTES, "binary");
    return oneShot("sha256", this.outer, encoding);
  }
}
