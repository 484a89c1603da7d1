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
 * Needs valgrind (apt-get install valgrind); takes a few minutes.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { RedisStore } from "../src/store/redis/redis-store.js";
import { freePort } from "../test/support/redis-server.js";

const N = Number(process.env["N"] ?? 1000);
const WARM = Number(process.env["WARM"] ?? 3000);
const CONCURRENCY = Number(process.env["CONCURRENCY"] ?? 4);
const OPS = ["create", "get", "extend", "close"] as const;
type Op = (typeof OPS)[number];

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
const input = (i: number) => ({
  tenant: "default",
  userId: `user-${String(i % 10_000).padStart(5, "0")}`,
  dataSource: `source-${i % 10}`,
  accessLevel: i % 3 === 0 ? "write" : "read",
  ttlMs: 3_600_000,
  metadata: JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 }),
  requestId: "",
}) as const;

/** Instructions since the last call (callgrind dumps and zeroes its counters). */
function counted(): number {
  execFileSync("callgrind_control", ["-d", String(server.pid)], { stdio: "ignore" });
  let total = 0;
  for (const file of readdirSync(dir).filter((f) => f.startsWith("cg.out."))) {
    total += Number(/^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, file), "utf8"))?.[1] ?? 0);
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
          ids.push((await store.create(input(i))).session.sessionId);
          continue;
        }
        const id = op === "close" ? ids.pop() : ids[(i * 7919) % ids.length];
        if (id === undefined) return;
        if (op === "get") await store.get("default", id, { touch: true, includeEnded: false });
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
  perOp[op] = Math.round(counted() / N);
}
console.log(OPS.map((op) => `${op} ${((perOp[op] ?? 0) / 1000).toFixed(1)}k`).join("  "), "Redis instructions per operation");
console.log(JSON.stringify({ n: N, warm: WARM, instructionsPerOp: perOp }));
await store.dispose();
admin.disconnect();
server.kill("SIGTERM");
