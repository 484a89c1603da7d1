/**
 * Static API keys, configured only as SHA-256 hashes (API_KEYS_FILE), so the
 * configuration never holds a usable secret:
 *
 *   [{ "id": "billing", "sha256": "<64 hex digits>", "tenant": "acme", "scopes": ["read", "write"] }]
 *
 * An entry may name a `user`: every call with that key then acts for that
 * user only (see principal.ts).
 *
 * The hash of a key: `printf %s "$KEY" | sha256sum`. Keys should be long and
 * random (`openssl rand -base64 32`): a plain hash is only as strong as what
 * it hashes. A presented key is hashed once and compared with every entry in
 * constant time (no early exit), so timing says nothing about the hashes.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { parseGrant, type Principal } from "./principal.js";

interface ApiKeyEntry {
  readonly hash: Buffer;
  readonly principal: Principal;
}

export class ApiKeyError extends Error {
  override readonly name = "ApiKeyError";
}

export class ApiKeys {
  private constructor(private readonly entries: readonly ApiKeyEntry[]) {}

  get size(): number {
    return this.entries.length;
  }

  /** Parses the file's JSON. Messages name the entry, never a hash. */
  static parse(json: string): ApiKeys {
    let list: unknown;
    try {
      list = JSON.parse(json);
    } catch {
      throw new ApiKeyError("is not valid JSON");
    }
    if (!Array.isArray(list)) throw new ApiKeyError("must be a JSON array of { id, sha256, tenant, scopes, user? }");
    const seen = new Set<string>();
    const entries = list.map((item: unknown, i): ApiKeyEntry => {
      const where = `entry ${i + 1}`;
      if (typeof item !== "object" || item === null) throw new ApiKeyError(`${where} must be an object`);
      const { id, sha256, tenant, scopes, user } = item as Record<string, unknown>;
      if (typeof id !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new ApiKeyError(`${where}: id must be 1-64 letters, digits, '_', '.' or '-'`);
      if ("key" in item || "secret" in item) throw new ApiKeyError(`${where} (${id}): give the sha256 of the key, never the key itself`);
      if (typeof sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(sha256)) throw new ApiKeyError(`${where} (${id}): sha256 must be 64 hexadecimal digits`);
      const grant = parseGrant(tenant, scopes, user);
      if (typeof grant === "string") throw new ApiKeyError(`${where} (${id}): ${grant}`);
      if (seen.has(id)) throw new ApiKeyError(`${where}: id ${id} is used twice`);
      seen.add(id);
      return { hash: Buffer.from(sha256, "hex"), principal: { id: `key:${id}`, ...grant } };
    });
    return new ApiKeys(entries);
  }

  /** The principal of the key, or undefined. */
  verify(token: string): Principal | undefined {
    const digest = createHash("sha256").update(token, "utf8").digest();
    let match: Principal | undefined;
    for (const entry of this.entries) {
      // Every entry is compared, whatever matched before.
      if (timingSafeEqual(digest, entry.hash) && match === undefined) match = entry.principal;
    }
    return match;
  }
}

/** The hash to put in API_KEYS_FILE for a key. */
export function apiKeyHash(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}
