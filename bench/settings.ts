/**
 * The benchmark's settings: environment, sizes, timeouts and the targets the
 * report judges against.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = dirname(HERE);
export const CONCURRENCY = 64;
/** Even, so that each variant goes first in half the rounds. */
export const ROUNDS = 6;
export const WARMUP_MS = envMs("BENCH_WARMUP_MS", 1000);
export const DURATION_MS = envMs("BENCH_DURATION_MS", 6000);
export const ROUND_MS = Math.ceil(DURATION_MS / ROUNDS);
/** Unmeasured start of each round, so that one operation's tail does not count as the next one's. */
export const ROUND_SETTLE_MS = 200;
export const MEMORY_SESSIONS = 100_000;
/** Issue 13's size: a neighbour tenant at 1M sessions over 100k data sources. */
export const ISOLATION_SESSIONS = envCount("BENCH_ISOLATION_SESSIONS", 1_000_000);
export const ISOLATION_SOURCES = envCount("BENCH_ISOLATION_SOURCES", 100_000);
export const ISOLATION_TIMEOUT_MS = 1_500_000;
/** How long the memory measurement may take before it is abandoned. */
export const MEMORY_TIMEOUT_MS = 300_000;
/** How long the watch benchmark may take before it is abandoned (it starts no step after its own budget, 480 s). */
export const WATCH_TIMEOUT_MS = 720_000;
/** How long the faults benchmark may take before it is abandoned. */
export const FAULTS_TIMEOUT_MS = 300_000;
/** How long the archive benchmark may take before it is abandoned. */
export const ARCHIVE_TIMEOUT_MS = 300_000;
/** Past this, a phase is considered hung and the run fails. */
export const PHASE_SLACK_MS = 60_000;
/** Bound on creating the sessions a close round uses up. */
export const FILL_TIMEOUT_MS = 60_000;
/**
 * The Node flags compared with none. A larger young generation (semi-space)
 * means fewer scavenges for a server whose garbage is almost all short-lived
 * request objects.
 */
export const CANDIDATE_FLAGS: readonly string[] = (process.env["BENCH_CANDIDATE_FLAGS"] || "--max-semi-space-size=64").split(" ").filter((f) => f !== "");
/** BENCH_PARTS: the parts to run by name; unset or empty: every part listed in run.ts. */
export const PARTS: ReadonlySet<string> | undefined = process.env["BENCH_PARTS"] ? new Set(process.env["BENCH_PARTS"].split(",").map((p) => p.trim()).filter((p) => p !== "")) : undefined;

export const TARGETS = {
  getOverCheck: 0.8,
  createOverCheck: 0.65,
  /** Issue 2: every index the session needs, no expiry machinery. */
  bytesPerSession: 600,
  /** Issue 3: with the expiry machinery (the due queue; no key per session). */
  bytesPerSessionWithExpiry: 700,
  /** Issue 3: expire_time → EXPIRED at a remote watcher, p99 at 100k live sessions. */
  expiryP99Ms: 100,
  expiryLiveSessions: 100_000,
  /** Issue 3: every one of 10k watchers held, p99 delivery. */
  fanoutWatchers: 10_000,
  fanoutP99Ms: 250,
  /** Issue 13: another tenant's p99 with a huge neighbour vs a small one. */
  isolationP99Ratio: 1.2,
};

function envCount(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1000 || n > 10_000_000) throw new Error(`${name} must be a whole number from 1000 to 10000000`);
  return n;
}

function envMs(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 300 || n > 60_000) throw new Error(`${name} must be a whole number of ms from 300 to 60000`);
  return n;
}

/**
 * The Node flags `npm run start:prod` passes (package.json), e.g.
 * "node --max-semi-space-size=64 dist/src/main.js" → ["--max-semi-space-size=64"],
 * so the benchmark judges the targets on what production runs.
 */
export function productionNodeFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts?: Record<string, string> };
  const words = (pkg.scripts?.["start:prod"] ?? "").split(/\s+/).filter((w) => w !== "");
  const node = words.indexOf("node");
  if (node < 0) throw new Error(`package.json start:prod does not run node: ${JSON.stringify(words.join(" "))}`);
  const flags: string[] = [];
  for (const word of words.slice(node + 1)) {
    if (!word.startsWith("-")) break;
    flags.push(word);
  }
  return flags;
}
