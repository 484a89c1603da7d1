/**
 * Reads an archive as stored in Redis (one MessagePack string, see
 * write_archive in src/store/redis/lua/prelude.ts), for tests that check the
 * raw state.
 */
import type { Redis } from "ioredis";

const FIELDS = ["u", "d", "l", "c", "e", "a", "m", "v", "s", "t"] as const;

export type RawArchive = Record<(typeof FIELDS)[number], string>;

const READ_LUA = `
local packed = redis.call('GET', KEYS[1])
if not packed then return false end
local out = {}
for i, v in ipairs({ cmsgpack.unpack(packed) }) do out[i] = tostring(v) end
return out
`;

/** The archive's fields by their record names, or undefined when there is none. */
export async function readArchive(redis: Redis, key: string): Promise<RawArchive | undefined> {
  const values = (await redis.eval(READ_LUA, 1, key)) as string[] | null;
  if (values === null) return undefined;
  return Object.fromEntries(FIELDS.map((f, i) => [f, values[i] ?? ""])) as RawArchive;
}
