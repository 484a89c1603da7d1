/**
 * Redis instructions per store operation: RedisStore in process against a
 * private redis-server run under `valgrind --tool=callgrind`, which counts the
 * instructions redis-server executes, so the figure does not depend on the
 * load of a shared machine (wall-clock usec_per_call moves by 2x there).
 * Creates WARM sessions (10,000 users, 10 data sources, ~40 B metadata, no
 * encryption), then for each operation runs N calls from CONCURRENCY (default
 * 4; 64 shows calls sent together, fcall-batcher.ts) concurrent callers
 * and divides the instructions counted meanwhile (callgrind_control -d dumps
 * and zeroes the counters) by N. Network handling is counted too: the same
 * for every version. The script uses only RedisStore's public API, so a copy
 * of it measures an earlier checkout as well (README "The scripts").
 *
 *   N=1000 WARM=3000 [CONCURRENCY=64] npx tsx bench/redis-script-cost.ts
 *
 * SHAPE=wire counts the wire bench's CreateSession and GetSession instead
 * (bench/wire-bench.ts: one user, metadata encryption on, through
 * SessionManager; every get reads the first session created, with touch).
 *
 * KEEP=dir keeps each operation's callgrind dump as dir/<op>.cg (for
 * callgrind_annotate: where the instructions go).
 *
 * Needs valgrind (apt-get install valgrind); takes a few minutes.
 */
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { pino } from "pino";
import type { Config } from "../src/config/config.js";
import { KeyedFieldCipher } from "../src/crypto/field-cipher.js";
import { Keyring } from "../src/crypto/keyring.js";
import { SessionManager } from "../src/session/session-manager.js";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { openSealedStore } from "../src/store/sealed-store.js";
import { freePort } from "../test/support/redis-server.js";

const N = Number(process.env["N"] ?? 1000);
const WARM = Number(process.env["WARM"] ?? 3000);
const CONCURRENCY = Number(process.env["CONCURRENCY"] ?? 4);
const WIRE = process.env["SHAPE"] === "wire";
const KEEP = process.env["KEEP"];
const OPS = WIRE ? (["create", "get"] as const) : (["create", "get", "extend", "close"] as const);
type Op = "create" | "get" | "extend" | "close";

const port = await freePort();
const dir = mkdtempSync(join(tmpdir(), "script-cost-"));
const server = spawn("valgrind", ["--tool=callgrind", `--callgrind-out-file=${join(dir, "cg.out")}`, "redis-server", "--port", String(port), "--save", "", "--appendonly", "no"], { stdio: "ignore" });
const admin = new Redis(port, { lazyConnect: true, retryStrategy: () => 200 });
admin.on("error", () => {});
for (let up = false; !up; ) {
  up = await admin.ping().then(() => true, () => false);
  if (!up) await sleep(300);
}
const store = new RedisStore({
  url: `redis://127.0.0.1:${port}`,
  keyPrefix: "sd:",
  limits: { maxDataKeys: 100, archiveRetentionMs: 86_400_000, expiryGraceMs: 3_600_000, maxSessionsPerUser: 0 },
  commandTimeoutMs: 120_000,
});
// The server settings the service applies at start (compact session records: server-settings.ts).
const settings = await store.keepServerSettings();
const logger = pino({ level: "silent" });
const cipher = new KeyedFieldCipher(new Keyring([{ id: "k1", key: randomBytes(32) }]));
// Only what create reads (as bench/create-cost-ab.ts).
const wireConfig = { ttl: { defaultMs: 3_600_000, minMs: 1000, maxMs: 86_400_000 }, limits: { maxMetadataBytes: 16_384, maxDataValueBytes: 65_536 } } as unknown as Config;
const manager = WIRE ? new SessionManager({ store: await openSealedStore(store, cipher, logger), config: wireConfig, cipher, logger }) : undefined;
/** A create of the wire bench's request (bench/wire-bench.ts). */
const wireCreate = async (m: SessionManager): Promise<string> =>
  (await m.create("default", { userId: "bench-user", dataSource: "warehouse-a", accessLevel: "read", ttlMs: 3_600_000, metadata: { app: "web", ip: "203.0.113.7", n: 100 } })).session.sessionId;
const input = (i: number) => ({
  tenant: "default",
  userId: `user-${String(i % 10_000).padStart(5, "0")}`,
  dataSource: `source-${i % 10}`,
  accessLevel: i % 3 === 0 ? "write" : "read",
  ttlMs: 3_600_000,
  metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }),
  requestId: "",
}) as const;

/** Instructions since the last call (callgrind dumps and zeroes its counters); keeps the dump as KEEP/<op>.cg. */
function counted(op?: Op): number {
  execFileSync("callgrind_control", ["-d", String(server.pid)], { stdio: "ignore" });
  let total = 0;
  for (const file of readdirSync(dir).filter((f) => f.startsWith("cg.out."))) {
    total += Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, file), "utf8"))?.[1] ?? 0);
    if (KEEP !== undefined && op !== undefined) {
      mkdirSync(KEEP, { recursive: true });
      copyFileSync(join(dir, file), join(KEEP, `${op}.cg`));
    }
    unlinkSync(join(dir, file));
  }
  return total;
}

const ids: string[] = [];
let next = 0;
async function run(op: Op, count: number): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (started < count) {
        started += 1;
        const i = next++;
        if (op === "create") {
          ids.push(manager === undefined ? (await store.create(input(i))).session.sessionId : await wireCreate(manager));
          continue;
        }
        const id = op === "close" ? ids.pop() : ids[(i * 7919) % ids.length];
        if (id === undefined) return;
        if (op === "get" && manager !== undefined) await manager.get("default", ids[0] as string, false);
        else if (op === "get") await store.get("default", id, { touch: true, includeEnded: false });
        else if (op === "extend") await store.extend("default", id, 3_600_000 + (i % 1000));
        else await store.close("default", id);
      }
    }),
  );
}

await run("create", WARM);
const perOp: Record<string, number> = {};
for (const op of OPS) {
  counted();
  await run(op, N);
  perOp[op] = Math.round(counted(op) / N);
}
console.log(OPS.map((op) => `${op} ${((perOp[op] ?? 0) / 1000).toFixed(1)}k`).join("  "), "Redis instructions per operation");
console.log(JSON.stringify({ n: N, warm: WARM, instructionsPerOp: perOp }));
await settings.stop();
await store.dispose();
admin.disconnect();
server.kill("SIGTERM");
