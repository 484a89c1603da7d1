/** A raw dump of a Redis: what whoever can read it sees (encryption tests). */
import assert from "node:assert/strict";
import type { Redis } from "ioredis";

/** Every key and every value in Redis, as text (SCAN-free KEYS is fine in a test). */
export async function rawDump(raw: Redis): Promise<string> {
  const parts: string[] = [];
  for (const k of await raw.keys("*")) {
    parts.push(k);
    const type = await raw.type(k);
    switch (type) {
      case "string":
        parts.push(String(await raw.get(k)));
        break;
      case "hash":
        parts.push(JSON.stringify(await raw.hgetall(k)));
        break;
      case "zset":
        parts.push(JSON.stringify(await raw.zrange(k, "0", "-1", "WITHSCORES")));
        break;
      case "set":
        parts.push(JSON.stringify(await raw.smembers(k)));
        break;
      case "list":
        parts.push(JSON.stringify(await raw.lrange(k, 0, -1)));
        break;
      case "stream":
        parts.push(JSON.stringify(await raw.xrange(k, "-", "+")));
        break;
      default:
        assert.fail(`unexpected key type ${type} of ${k}`);
    }
    // The serialized form too (catches anything a typed read would decode away).
    const dumped = await raw.dumpBuffer(k);
    if (dumped !== null) parts.push(dumped.toString("latin1"));
  }
  return parts.join("\n");
}
