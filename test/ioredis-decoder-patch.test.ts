/**
 * patches/ioredis+6.0.0.patch (applied by patch-package on install): ioredis
 * 6.0.0 ships its RESP decoder compiled for targets without class private
 * fields, so every read of its cursor went through a WeakMap. The patch keeps
 * them as plain properties and changes nothing else. These tests hold it to
 * that: the installed ioredis is the pinned version with the patch applied,
 * every kind of RESP2 and RESP3 reply decodes to the same values however the
 * bytes are split into chunks, and replies larger than a socket read come back
 * whole from a real redis-server.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { useRedisServer } from "./support/redis-server.js";

const require = createRequire(import.meta.url);
const DECODER_PATH = require.resolve("ioredis").replace(/built[/\\]index\.js$/, "built/resp/decoder.js");

interface DecoderModule {
  readonly Decoder: new (config: {
    getTypeMapping: () => Record<number, unknown>;
    onReply: (reply: unknown) => void;
    onErrorReply: (error: Error) => void;
    onPush: (push: unknown[]) => void;
  }) => { write(chunk: Buffer): void };
}
const { Decoder } = require(DECODER_PATH) as DecoderModule;

/** Every RESP2 and RESP3 type, nested and simple, errors among them. */
const REPLIES = Buffer.from(
  "*3\r\n$5\r\nhello\r\n:42\r\n*2\r\n$-1\r\n+OK\r\n" +
    "-ERR bad\r\n" +
    ",3.14\r\n,1e3\r\n,-2.5\r\n_\r\n" +
    "%1\r\n$1\r\nk\r\n$1\r\nv\r\n" +
    ">2\r\n+message\r\n$2\r\nhi\r\n" +
    "#t\r\n(12345678901234567890\r\n=8\r\ntxt:abcd\r\n~2\r\n:1\r\n:-2\r\n!5\r\nERR x\r\n" +
    "$0\r\n\r\n*0\r\n*-1\r\n:0\r\n",
);

/** What a client sees of each reply: values as they are, errors by class and message. */
const EXPECTED: unknown[] = [
  ["hello", 42, [null, "OK"]],
  "error ReplyError: ERR bad",
  3.14,
  1000,
  -2.5,
  null,
  { k: "v" },
  ["push", ["message", "hi"]],
  true,
  12345678901234567890n,
  "abcd",
  [1, -2],
  "error ReplyError: ERR x",
  "",
  [],
  null,
  0,
];

function decode(chunks: readonly Buffer[]): unknown[] {
  const out: unknown[] = [];
  const decoder = new Decoder({
    getTypeMapping: () => ({}),
    onReply: (reply) => out.push(reply),
    onErrorReply: (error) => out.push(`error ${error.name}: ${error.message}`),
    onPush: (push) => out.push(["push", push.map((x) => (Buffer.isBuffer(x) ? x.toString() : x))]),
  });
  for (const chunk of chunks) decoder.write(chunk);
  return out;
}

describe("ioredis's RESP decoder as patched", () => {
  it("is the pinned ioredis with the patch applied", () => {
    const pinned = (JSON.parse(readFileSync("package.json", "utf8")) as { dependencies: Record<string, string> }).dependencies["ioredis"];
    const installed = (JSON.parse(readFileSync(DECODER_PATH.replace(/built[/\\]resp[/\\]decoder\.js$/, "package.json"), "utf8")) as { version: string }).version;
    assert.equal(pinned, "6.0.0", "an exact pin: the patch is made for this version's build");
    assert.equal(installed, pinned);
    const source = readFileSync(DECODER_PATH, "utf8");
    assert.doesNotMatch(source, /__classPrivateFieldGet\(this,/, "the decoder's fields are plain properties");
    assert.doesNotMatch(source, /_Decoder_instances\.add\(this\)/);
  });

  it("decodes every kind of reply to the values a client expects", () => {
    assert.deepEqual(decode([REPLIES]), EXPECTED);
  });

  it("decodes the same values wherever the bytes are split", () => {
    for (let at = 1; at < REPLIES.length; at++) {
      assert.deepEqual(decode([REPLIES.subarray(0, at), REPLIES.subarray(at)]), EXPECTED, `split at byte ${at}`);
    }
    const bytes = Array.from({ length: REPLIES.length }, (_, i) => REPLIES.subarray(i, i + 1));
    assert.deepEqual(decode(bytes), EXPECTED, "one byte at a time");
    for (let a = 1; a < REPLIES.length; a += 7) {
      for (let b = a + 1; b < REPLIES.length; b += 5) {
        assert.deepEqual(decode([REPLIES.subarray(0, a), REPLIES.subarray(a, b), REPLIES.subarray(b)]), EXPECTED, `split at ${a} and ${b}`);
      }
    }
  });

  describe("against a real redis-server", () => {
    const redis = useRedisServer();

    it("returns replies larger than a socket read whole, nested and binary", async () => {
      const client = redis.client();
      try {
        const big = Buffer.alloc(3 * 1024 * 1024 + 17, 0);
        for (let i = 0; i < big.length; i += 4099) big[i] = i % 251;
        await client.set("decoder:big", big);
        assert.ok((await client.getBuffer("decoder:big"))?.equals(big), "a 3 MiB value");
        const ids: string[] = [];
        for (let i = 0; i < 2000; i++) ids.push(String(await client.xadd("decoder:stream", "*", "r", `entry-${i}\r\n-ERR not an error`, "g", String(i))));
        const entries = await client.xrange("decoder:stream", "-", "+");
        assert.equal(entries.length, 2000);
        entries.forEach(([id, fields], i) => {
          assert.equal(id, ids[i]);
          assert.deepEqual(fields, ["r", `entry-${i}\r\n-ERR not an error`, "g", String(i)]);
        });
        await assert.rejects(client.call("HGET", "decoder:big", "x"), /WRONGTYPE/);
        assert.equal(await client.get("decoder:absent"), null);
        assert.equal(await client.incrby("decoder:n", -5), -5);
      } finally {
        client.disconnect();
      }
    });
  });
});
