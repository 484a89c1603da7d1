/**
 * What reaches the file behind a batched descriptor (batched-destination.ts)
 * from the per-call records (plain-records.ts) must be, byte for byte, the
 * UTF-8 of the lines JSON.stringify's field-by-field text makes
 * (referenceLine below), over generated records of awkward strings, numbers
 * and undefined fields, in order with pino's own lines. And a burst larger
 * than the batch bound must be written out as it goes, never held whole.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { BATCH_MAX_BYTES, batchedDescriptor } from "../src/logging/batched-destination.js";
import { isoTime } from "../src/logging/iso-time.js";
import { plainRecord, registerPlainRecords, type PlainLevel } from "../src/logging/plain-records.js";

const LEVELS: Readonly<Record<PlainLevel, number>> = { debug: 20, info: 30, warn: 40 };

/** The record text as JSON.stringify writes it, field by field (non-finite numbers as null, undefined left out). */
function referenceFields(record: Readonly<Record<string, unknown>>): string {
  let out = "";
  for (const key in record) {
    const value = record[key];
    if (value === undefined) continue;
    const text = typeof value === "number" && !Number.isFinite(value) ? "null" : JSON.stringify(value);
    out += `,${JSON.stringify(key)}:${text}`;
  }
  return out;
}

function referenceLine(level: PlainLevel, bindings: string, record: Readonly<Record<string, unknown>>, msg: string): string {
  return `{"level":${LEVELS[level]},"time":"T"${bindings}${referenceFields(record)},"msg":${JSON.stringify(msg)}}\n`;
}

/** The time differs between two lines made a moment apart: replaced, in the bytes read as latin1 (one char per byte). */
const timeless = (bytes: Buffer): string => bytes.toString("latin1").replace(/,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/g, ',"time":"T"');

/** A seeded generator, so that a failure can be rerun. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const STRINGS = [
  "",
  "plain-ascii_value.1",
  "0b9d6c84-58a4-4b8f-9d8e-3f1f4c1b2a7e",
  'quote " inside',
  "back\\slash",
  "control \u0000 \u0001 \b \f \n \r \t \u001f",
  "del \u007f",
  "grüße ✓ 日本",
  "pair 😀",
  "lone high \ud800 end",
  "lone low \udfff",
  "\ud83d",
  "~ !#$%&'()*+,-./:;<=>?@[]^_`{|}",
];
const NUMBERS = [0, -0, 1, -1, 1.5, 0.1 + 0.2, 1e21, 1e-7, -123456.789, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 53];
const KEYS = ["method", "sessionId", "durationMs", "principal", "a b", 'q"k', "back\\k", "ключ", "n"];

function generatedRecord(next: () => number): Record<string, unknown> {
  const pick = <T>(from: readonly T[]): T => from[Math.floor(next() * from.length)]!;
  const record: Record<string, unknown> = {};
  const fields = Math.floor(next() * 8);
  for (let i = 0; i < fields; i++) {
    const kind = next();
    record[`${pick(KEYS)}${i}`] = kind < 0.5 ? pick(STRINGS) : kind < 0.75 ? pick(NUMBERS) : kind < 0.9 ? next() < 0.5 : undefined;
  }
  return record;
}

/**
 * Runs `body` with a logger registered for plain records on a batched
 * destination over a fresh file; `read` flushes the batch and returns the
 * file's bytes.
 */
function withBatchedFile(
  base: Readonly<Record<string, string | boolean>>,
  body: (logger: Logger, read: () => Buffer, fd: number) => void,
): void {
  const dir = mkdtempSync(join(tmpdir(), "plain-records-"));
  const path = join(dir, "out.log");
  const fd = openSync(path, "w");
  try {
    const destination = batchedDescriptor(fd);
    const logger = registerPlainRecords(pino({ level: "debug", base, timestamp: isoTime }, destination), destination, base);
    body(logger, () => {
      destination.flushSync();
      return readFileSync(path);
    }, fd);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("plain records on a batched descriptor", () => {
  test("the bytes written are the reference lines in UTF-8, over generated records", () => {
    withBatchedFile({ service: "sessiond", log: "audit", audit: true }, (logger, read) => {
      const bindings = `,"service":"sessiond","log":"audit","audit":true`;
      const next = random(20261129);
      const expected: string[] = [];
      for (let i = 0; i < 3000; i++) {
        const record = generatedRecord(next);
        const level = (["debug", "info", "warn"] as const)[i % 3]!;
        const msg = i % 7 === 0 ? "mëssage \"q\"" : "rpc";
        plainRecord(logger, level, record, msg);
        expected.push(referenceLine(level, bindings, record, msg));
      }
      assert.equal(timeless(read()), timeless(Buffer.from(expected.join(""), "utf8")));
    });
  });

  test("bindings beyond ASCII, and pino's own lines in between, keep their bytes and order", () => {
    withBatchedFile({ service: "sessiond-ü" }, (logger, read) => {
      plainRecord(logger, "info", { a: "x" }, "one");
      logger.error({ err: "pino's own ✓" }, "two");
      plainRecord(logger, "info", { b: 1 }, "three");
      const lines = timeless(read()).split("\n");
      assert.equal(lines.length, 4);
      assert.equal(lines[0], Buffer.from(`{"level":30,"time":"T","service":"sessiond-ü","a":"x","msg":"one"}`, "utf8").toString("latin1"));
      assert.equal(JSON.parse(Buffer.from(lines[1]!, "latin1").toString("utf8")).err, "pino's own ✓");
      assert.equal(lines[2], Buffer.from(`{"level":30,"time":"T","service":"sessiond-ü","b":1,"msg":"three"}`, "utf8").toString("latin1"));
    });
  });

  test("a burst beyond the batch bound is written as it goes: never more than the bound waits", () => {
    withBatchedFile({}, (logger, read, fd) => {
      const id = "0b9d6c84-58a4-4b8f-9d8e-3f1f4c1b2a7e";
      let logged = 0;
      let largestWait = 0;
      // One turn: nothing but the bound makes the batch write.
      for (let i = 0; i < 5000; i++) {
        const record = { method: "session.v1.SessionService/GetSession", sessionId: id, n: i, note: i % 10 === 0 ? 'quoted "x"' : "plain" };
        plainRecord(logger, "info", record, "rpc");
        logged += Buffer.byteLength(`{"level":30,"time":"2026-11-29T00:00:00.000Z"${referenceFields(record)},"msg":"rpc"}\n`);
        largestWait = Math.max(largestWait, logged - fstatSync(fd).size);
      }
      // A line larger than the bound goes out at once, after what waited, and the next one after it.
      const huge = "h".repeat(4 * BATCH_MAX_BYTES);
      plainRecord(logger, "info", { huge }, "big");
      plainRecord(logger, "info", { after: true }, "rpc");
      assert.ok(logged > 4 * BATCH_MAX_BYTES, "the burst is several batches long");
      assert.ok(largestWait < BATCH_MAX_BYTES, `${largestWait} bytes waited at most`);
      const lines = read().toString("utf8").split("\n");
      assert.equal(lines.length, 5000 + 3);
      for (let i = 0; i < 5000; i++) assert.equal(JSON.parse(lines[i]!).n, i);
      assert.equal(JSON.parse(lines[5000]!).huge, huge);
      assert.equal(JSON.parse(lines[5001]!).after, true);
    });
  });
});
