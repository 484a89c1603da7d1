/**
 * Chooses how metadata and data values are stored, from the configuration:
 * sealed with the configured keys; on the in-memory store without keys,
 * sealed with an ephemeral key (its data dies with the process anyway); on
 * Redis without keys, refused unless ALLOW_PLAINTEXT=true says plaintext is
 * intended.
 */
import type { Logger } from "pino";
import { ConfigError, usesRedis, type Config } from "../config/config.js";
import { aead } from "./chacha20-poly1305.js";
import { KeyedFieldCipher, PLAINTEXT_CIPHER, type FieldCipher } from "./field-cipher.js";

export function cipherForConfig(config: Config, logger: Logger): FieldCipher {
  const { keyring, allowPlaintext, migratePlaintext, algorithm } = config.encryption;
  if (keyring !== undefined) {
    const implementation = algorithm === "chacha20-poly1305" ? aead.name : "node:crypto";
    logger.info({ primaryKeyId: keyring.primary.id, keyIds: keyring.ids, algorithm, implementation }, "metadata and data values are encrypted at rest");
    if (migratePlaintext) {
      logger.warn("ENCRYPTION_MIGRATE_PLAINTEXT=true: values stored in plaintext are still read; run `npm run reencrypt`, then turn it off");
    }
    return new KeyedFieldCipher(keyring, migratePlaintext, algorithm);
  }
  if (!usesRedis(config)) return KeyedFieldCipher.ephemeral();
  if (allowPlaintext) {
    logger.warn("ENCRYPTION_KEYS is not set and ALLOW_PLAINTEXT=true: metadata and data values are stored in Redis in plaintext");
    return PLAINTEXT_CIPHER;
  }
  throw new ConfigError(
    "REDIS_URL is set but no ENCRYPTION_KEYS (or ENCRYPTION_KEYS_FILE) is configured, so metadata and data values would be stored in plaintext; " +
      "configure a key (id:base64 of `openssl rand -base64 32`) or set ALLOW_PLAINTEXT=true",
  );
}
