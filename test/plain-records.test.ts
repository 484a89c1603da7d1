/**
 * plain-records.ts writes the per-call records of registered loggers itself:
 * the line must be the one pino writes for the same call (same fields, same
 * order, undefined fields left out, same level and message), the logger's
 * level must still apply, and a logger that is not registered (or a stream
 * that routes by pino's metadata) must go through pino.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { pino, type DestinationStream } from "pino";
import { isoTime } from "../src/logging/iso-time.js";
import { createLogger } from "../src/logging/logger.js";
import { plainRecord, registerPlainRecords, type PlainLevel } from "../src/logging/plain-records.js";
import { AuditLog } from "../src/audit/audit-log.js";

/** A destination that keeps the lines written to it. */
function capture(): DestinationStream & { lines: string[] } {
  const lines: string[] = [];
  return { lines, write: (line: string) => void lines.push(line) };
}

/** The time field differs between two lines made a moment apart: compare without it. */
const withoutTime = (line: string): string => line.replace(/,"time":"[^"]*"/, "");

const RECORDS: readonly object[] = [
  { method: "session.v1.SessionService/GetSession", sessionId: "0b9d6c84-58a4-4b8f-9d8e-3f1f4c1b2a7e", durationMs: 1.234, requestId: "r-1", traceId: undefined, code: "ok" },
  { principal: "key:a\"b\\c", tenant: "t", delegated: true, peer: "[::1]:5000", outcome: "not_found", n: 0 },
  { quote: 'he said "hi"', control: "a\nb\tc", unicode: "grüße ✓ 日本", long: "x".repeat(150) },
  // What the record writer leaves to JSON.stringify, and what it must write the same way itself.
  { pair: "😀", del: "\u007f", nan: Number.NaN, inf: Number.POSITIVE_INFINITY, negZero: -0, big: 1e21, small: 1e-7, nil: null, nested: { a: [1, "b"] } },
  { 2: "index first", "quoted\"key": 1, fn: () => 1, b: false },
  {},
];

describe("plain records", () => {
  for (const level of ["debug", "info", "warn"] as const satisfies readonly PlainLevel[]) {
    test(`a registered logger writes the line pino writes (${level})`, () => {
      const base = { service: "sessiond", log: "audit", audit: true } as const;
      const ours = capture();
      const theirs = capture();
      const registered = registerPlainRecords(pino({ level: "debug", base, timestamp: isoTime }, ours), ours, base);
      const reference = pino({ level: "debug", base, timestamp: isoTime }, theirs);
      for (const record of RECORDS) {
        plainRecord(registered, level, record, "rpc");
        reference[level](record, "rpc");
      }
      assert.equal(ours.lines.length, RECORDS.length);
      assert.deepEqual(ours.lines.map(withoutTime), theirs.lines.map(withoutTime));
      for (const line of ours.lines) assert.match(line, /^\{"level":\d+,"time":"\d{4}-\d\d-\d\dT[\d:.]+Z",.*\}\n$/);
    });
  }

  test("a lone surrogate is escaped, as JSON.stringify writes it (pino would write it raw)", () => {
    const out = capture();
    const base = { service: "s" } as const;
    const logger = registerPlainRecords(pino({ base, timestamp: isoTime }, out), out, base);
    plainRecord(logger, "info", { lone: "a\ud800b", end: "\udfff" }, "m");
    assert.equal(withoutTime(out.lines[0]!), `{"level":30,"service":"s","lone":"a\\ud800b","end":"\\udfff","msg":"m"}\n`);
    assert.equal(JSON.parse(out.lines[0]!).lone, "a\ud800b");
  });

  test("createLogger's JSON logger is registered and keeps its level", () => {
    const out = capture();
    const logger = createLogger({ level: "info", format: "json", destination: out });
    plainRecord(logger, "debug", { a: 1 }, "rpc");
    assert.equal(out.lines.length, 0, "below the level: nothing written");
    plainRecord(logger, "warn", { a: 1 }, "rpc");
    assert.equal(out.lines.length, 1);
    assert.deepEqual(JSON.parse(out.lines[0]!), { level: 40, time: JSON.parse(out.lines[0]!).time, service: "sessiond", a: 1, msg: "rpc" });
    logger.level = "silent";
    plainRecord(logger, "warn", { a: 2 }, "rpc");
    assert.equal(out.lines.length, 1, "a level changed at run time applies");
  });

  test("an unregistered logger and a metadata-routing stream go through pino", () => {
    const out = capture();
    const plain = pino({ base: null, timestamp: false }, out);
    plainRecord(plain, "info", { a: 1 }, "m");
    assert.deepEqual(JSON.parse(out.lines[0]!), { level: 30, a: 1, msg: "m" });

    const routed = capture();
    const multi = pino.multistream([{ level: "warn", stream: routed }]);
    const logger = registerPlainRecords(pino({ base: { service: "s" }, timestamp: isoTime }, multi), multi, { service: "s" });
    plainRecord(logger, "info", { a: 1 }, "m");
    plainRecord(logger, "warn", { a: 2 }, "m");
    assert.equal(routed.lines.length, 1, "routed by level, which only pino's own write tells the stream");
    assert.equal(JSON.parse(routed.lines[0]!).a, 2);
  });

  test("an audit record has the audit bindings, fields in order, undefined left out", () => {
    const out = capture();
    const base = { service: "sessiond", log: "audit", audit: true } as const;
    const audit = new AuditLog(registerPlainRecords(pino({ level: "info", base, timestamp: isoTime }, out), out, base));
    audit.record({ principal: "anonymous", tenant: "default", user: undefined, operation: "get", method: "session.v1.SessionService/GetSession", outcome: "ok", sessionId: "s".repeat(80) });
    const line = out.lines[0]!;
    assert.deepEqual(Object.keys(JSON.parse(line)), ["level", "time", "service", "log", "audit", "principal", "tenant", "operation", "method", "outcome", "sessionId", "msg"]);
    assert.equal(JSON.parse(line).sessionId, "s".repeat(64), "an overlong id is cut");
  });
});
