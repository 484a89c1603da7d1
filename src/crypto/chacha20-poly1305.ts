/**
 * ChaCha20-Poly1305 (RFC 8439: 256-bit key, 96-bit nonce, 128-bit tag) for
 * sealing short values, through libsodium (sodium-native, its public API
 * only, version pinned exactly in package.json). node:crypto computes the
 * same bytes, but builds a cipher object with a native handle per value,
 * several times libsodium's cost for a value of a few hundred bytes; every
 * create and update seals one. Where the addon cannot load (a platform
 * without its prebuilt binary), node:crypto does the work: the bytes are the
 * same either way (test/chacha20-poly1305.test.ts compares them).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { createRequire } from "node:module";

export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;

/** The two calls used of sodium-native. */
interface Sodium {
  crypto_aead_chacha20poly1305_ietf_encrypt(out: Buffer, message: Buffer, additional: Buffer | null, secretNonce: null, nonce: Buffer, key: Buffer): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(out: Buffer, secretNonce: null, sealed: Buffer, additional: Buffer | null, nonce: Buffer, key: Buffer): number;
}

export interface Aead {
  /** Which implementation: for the start log and tests. */
  readonly name: "libsodium" | "node:crypto";
  /** Writes ciphertext ‖ tag (message.length + TAG_BYTES bytes) into `out`. */
  seal(out: Buffer, message: Buffer, additional: Buffer, nonce: Buffer, key: Buffer): void;
  /** The message, or undefined when `sealed` (ciphertext ‖ tag) does not authenticate under this key, nonce and associated data. */
  open(sealed: Buffer, additional: Buffer, nonce: Buffer, key: Buffer): Buffer | undefined;
}

export const nodeAead: Aead = {
  name: "node:crypto",
  seal(out, message, additional, nonce, key) {
    const cipher = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(additional, { plaintextLength: message.length });
    const body = cipher.update(message);
    out.set(body, 0);
    out.set(cipher.final(), body.length);
    out.set(cipher.getAuthTag(), message.length);
  },
  open(sealed, additional, nonce, key) {
    if (sealed.length < TAG_BYTES) return undefined;
    const length = sealed.length - TAG_BYTES;
    try {
      const decipher = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(additional, { plaintextLength: length });
      decipher.setAuthTag(sealed.subarray(length));
      return Buffer.concat([decipher.update(sealed.subarray(0, length)), decipher.final()]);
    } catch {
      return undefined;
    }
  },
};

function sodiumAead(sodium: Sodium): Aead {
  return {
    name: "libsodium",
    seal(out, message, additional, nonce, key) {
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out.subarray(0, message.length + TAG_BYTES), message, additional, null, nonce, key);
    },
    open(sealed, additional, nonce, key) {
      if (sealed.length < TAG_BYTES) return undefined;
      const out = Buffer.allocUnsafe(sealed.length - TAG_BYTES);
      try {
        sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, sealed, additional, nonce, key);
        return out;
      } catch {
        // sodium-native throws when the tag does not verify.
        return undefined;
      }
    },
  };
}

function loadSodium(): Sodium | undefined {
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined;
  }
}

const sodium = loadSodium();

/** libsodium's, or node:crypto's where the addon is missing. */
export const aead: Aead = sodium === undefined ? nodeAead : sodiumAead(sodium);

/** libsodium's, when it loaded (tests compare it with node:crypto's). */
export const sodiumAeadIfLoaded: Aead | undefined = sodium === undefined ? undefined : sodiumAead(sodium);
