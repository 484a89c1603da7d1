/**
 * Throughput: CreateSession, GetSession, ExtendSession, CloseSession and
 * Health/Check over gRPC against the service in its own process, as an A/B of
 * Node flags (each variant with its own redis-server and load generator, rounds
 * interleaved), then the same operations done directly with ioredis.
 */
import type { Redis } from "ioredis";
import { errorNote, flagsLabel, fmtInt, fmtMs, fmtPct, fmtUs } from "../format.js";
import type { BenchPart, TargetRow } from "../part.js";
import { running, startStack, stopStack, type MachineInfo, type Stack } from "../processes.js";
import { summarize, type MeasuredSample, type PhaseResult, type PhaseSpec } from "../phase.js";
import { CANDIDATE_FLAGS, CONCURRENCY, ROUND_MS, ROUND_SETTLE_MS, ROUNDS, TARGETS, WARMUP_MS } from "../settings.js";
import { cpuCeiling, median, medianRatio, roundCpuRatios, roundRatios, spread } from "../statistics.js";

/**
 * The variants compared: no flags, and the candidate flags. The one
 * `npm run start:prod` runs must be among them (its targets are judged on it).
 */
export function flagVariants(productionFlags: readonly string[]): { variants: { label: string; flags: readonly string[] }[]; production: number } {
  const variants = [
    { label: "A (no flags)", flags: [] as readonly string[] },
    { label: `B (${flagsLabel(CANDIDATE_FLAGS)})`, flags: CANDIDATE_FLAGS },
  ];
  const production = variants.findIndex((v) => v.flags.join(" ") === productionFlags.join(" "));
  if (production < 0) {
    throw new Error(`package.json start:prod runs node with ${flagsLabel(productionFlags)}, which bench/run.ts does not measure: update CANDIDATE_FLAGS`);
  }
  return { variants, production };
}

export const throughputPart: BenchPart<Throughput> = {
  name: "throughput",
  async run({ logLevel, productionFlags }) {
    const { variants, production } = flagVariants(productionFlags);
    const stacks: Stack[] = [];
    for (const v of variants) stacks.push(await startStack(v.label, v.flags, logLevel));
    console.log("gRPC (service and Health/Check), A/B of Node flags:");
    const results = await measureInterleaved(stacks.map((stack) => ({ stack, ops: SERVICE_OPERATIONS })));
    // The direct floor needs no service: only the first stack's redis-server and load generator stay.
    for (const stack of stacks) {
      await stack.service.stop();
      running.delete(stack.service);
    }
    for (const stack of stacks.slice(1)) await stopStack(stack);
    console.log("direct ioredis:");
    const first = stacks[0] as Stack;
    const [direct] = await measureInterleaved([
      {
        stack: first,
        ops: [
          { name: "CreateSession", target: "direct", op: "create" },
          { name: "GetSession", target: "direct", op: "get" },
          { name: "ExtendSession", target: "direct", op: "extend" },
          { name: "CloseSession", target: "direct", op: "close" },
        ],
      },
    ]);
    await stopStack(first);
    return {
      variants: variants.map((v, i) => ({
        label: v.label,
        flags: v.flags,
        peakRss: stacks[i]?.service.peakRss ?? Number.NaN,
        check: required(results[i], "check"),
        service: { create: required(results[i], "create"), get: required(results[i], "get"), extend: required(results[i], "extend"), close: required(results[i], "close") },
      })),
      production,
      direct: { create: required(direct, "create"), get: required(direct, "get"), extend: required(direct, "extend"), close: required(direct, "close") },
    };
  },
  targetRows: (t) => {
    const rows: TargetRow[] = [];
    if (t !== undefined) {
      const v = t.variants[t.production] as VariantResult;
      // Judged on the service's own CPU per call. A throughput ratio on cores shared with the load generator is a
      // ratio of all three processes' CPU per call, most of it the client's and alike for every operation: it moves
      // with the client's cost, even against the service's. It stays in the row, for reading.
      for (const [op, name, target] of [
        ["get", "GetSession", TARGETS.getOverCheck],
        ["create", "CreateSession", TARGETS.createOverCheck],
      ] as const) {
        const p = v.service[op];
        const cpu = roundCpuRatios(p, v.check);
        const ratio = median(cpu);
        rows.push({
          measure: `${name} / Health/Check: the service's CPU per call, Check's ÷ ${name}'s (the throughput ratio of a service with cores of its own; ${fmtUs(v.check.serverCpuUsPerOp)} / ${fmtUs(p.serverCpuUsPerOp)} µs), median of ${ROUNDS} rounds, spread ${spread(cpu)}. Throughput ratio on this machine, where the load generator (${fmtUs(v.check.clientCpuUsPerOp)} µs per Check) shares the cores: ${fmtPct(medianRatio(p, v.check))}, spread ${spread(roundRatios(p, v.check))}`,
          value: fmtPct(ratio),
          target: `≥ ${fmtPct(target)}`,
          ok: ratio >= target,
        });
      }
    } else {
      rows.push({ measure: "GetSession and CreateSession / Health/Check", value: "not run (BENCH_PARTS)", target: "", ok: undefined });
    }
    return rows;
  },
  render: (lines, t, { machine }) => renderThroughput(lines, t, machine),
  failed: (t) => failedPhases(t).length > 0,
};

export interface Operation {
  readonly name: string;
  readonly target: PhaseSpec["target"];
  readonly op: PhaseSpec["op"];
}

/** The service's operations, in the order of odd rounds (roundOrder reverses it in even ones). */
export const SERVICE_OPERATIONS: readonly Operation[] = [
  // Create first at warm-up (Get needs its sessions), and Check between the two operations compared with it.
  { name: "CreateSession", target: "service", op: "create" },
  { name: "Health/Check", target: "health", op: "check" },
  { name: "GetSession", target: "service", op: "get" },
  { name: "ExtendSession", target: "service", op: "extend" },
  { name: "CloseSession", target: "service", op: "close" },
];

/** Operations run against one stack. */
interface Lane {
  readonly stack: Stack;
  readonly ops: readonly Operation[];
}

/**
 * Runs each operation of each lane for WARMUP_MS (discarded), then ROUNDS
 * rounds; in each round every lane runs every operation in turn (roundOrder),
 * the lanes in alternating order. Returns each lane's operations, their rounds summed.
 */
async function measureInterleaved(lanes: readonly Lane[]): Promise<Map<PhaseSpec["op"], PhaseResult>[]> {
  /** Latest throughput of each op per lane, to size the pool a close round needs. */
  const rates = lanes.map(() => new Map<PhaseSpec["op"], number>());
  const samples = lanes.map((lane) => new Map<PhaseSpec["op"], MeasuredSample[]>(lane.ops.map((o) => [o.op, []])));
  const runOne = async (index: number, o: Operation, warmupMs: number, durationMs: number): Promise<MeasuredSample> => {
    const { stack } = lanes[index] as Lane;
    const laneRates = rates[index] as Map<PhaseSpec["op"], number>;
    const spec: PhaseSpec = { ...o, concurrency: CONCURRENCY, warmupMs, durationMs };
    if (o.op === "close") await stack.load.fill(spec, poolFor(laneRates, warmupMs + durationMs, o.target === "direct" ? 2 : 3));
    const withService = o.target !== "direct";
    const redisBefore = await redisCpuUs(stack.redisClient);
    const serviceBefore = withService ? await stack.service.usage() : undefined;
    const sample = await stack.load.run(spec);
    const serviceAfter = withService ? await stack.service.usage() : undefined;
    const redisUs = (await redisCpuUs(stack.redisClient)) - redisBefore;
    if (sample.windowMs > 0) laneRates.set(o.op, (sample.ops / sample.windowMs) * 1000);
    return {
      ...sample,
      serverCpuUs: serviceAfter === undefined || serviceBefore === undefined ? 0 : serviceAfter.cpuUs - serviceBefore.cpuUs,
      serverGcUs: serviceAfter === undefined || serviceBefore === undefined ? 0 : serviceAfter.gcUs - serviceBefore.gcUs,
      redisCpuUs: redisUs,
    };
  };
  for (const [index, lane] of lanes.entries()) {
    process.stdout.write(`  ${lane.ops[0]?.target === "direct" ? "direct" : lane.stack.label} warm-up:`);
    for (const o of lane.ops) {
      process.stdout.write(` ${o.name}`);
      await runOne(index, o, 0, WARMUP_MS);
    }
    console.log();
  }
  for (let round = 1; round <= ROUNDS; round++) {
    const order = [...lanes.keys()];
    if (round % 2 === 0) order.reverse();
    for (const index of order) {
      const lane = lanes[index] as Lane;
      const line: string[] = [];
      for (const o of roundOrder(lane.ops, round)) {
        const sample = await runOne(index, o, ROUND_SETTLE_MS, ROUND_MS);
        samples[index]?.get(o.op)?.push(sample);
        line.push(`${o.name} ${fmtInt(rates[index]?.get(o.op) ?? 0)}`);
      }
      const label = lane.ops[0]?.target === "direct" ? "direct" : lane.stack.label;
      console.log(`  round ${round}/${ROUNDS} ${label} (ops/s): ${line.join(", ")}`);
    }
  }
  return lanes.map((lane, index) => new Map(lane.ops.map((o) => [o.op, summarize(o, samples[index]?.get(o.op) ?? [])])));
}

/**
 * A round's operations: as listed in odd rounds, reversed in even ones. With one
 * fixed order, whatever the machine does over a round (other work starting or
 * ending, the previous operation's leftovers such as GC debt or background
 * catch-up) biases every round's ratio the same way, and Health/Check always
 * ran right after CreateSession; reversed every other round, that bias changes
 * sign and the median over rounds cancels it. Check stays next to both
 * operations compared with it.
 */
export function roundOrder<T>(ops: readonly T[], round: number): readonly T[] {
  return round % 2 === 0 ? [...ops].reverse() : ops;
}

/** CPU time redis-server has used so far (INFO cpu), µs. */
async function redisCpuUs(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? Number.NaN);
  return (field("used_cpu_user") + field("used_cpu_sys")) * 1e6;
}

/**
 * Enough sessions for a close round to run its whole window: the faster of the
 * last close rate and twice the create rate, times a margin. gRPC rates swing
 * from round to round on a shared machine, so they get a wide margin; the direct
 * rates are steady, and each of their sessions costs Redis memory.
 */
function poolFor(rates: ReadonlyMap<PhaseSpec["op"], number>, ms: number, margin: number): number {
  const rate = Math.max(rates.get("close") ?? 0, 2 * (rates.get("create") ?? 1000));
  return Math.ceil((rate * margin * ms) / 1000);
}

function required<K, V>(map: ReadonlyMap<K, V> | undefined, key: K): V {
  const value = map?.get(key);
  if (value === undefined) throw new Error(`no result for ${String(key)}`);
  return value;
}

export type OpKey = "create" | "get" | "extend" | "close";

export interface VariantResult {
  readonly label: string;
  readonly flags: readonly string[];
  readonly check: PhaseResult;
  readonly service: Record<OpKey, PhaseResult>;
  /** Largest resident set size of the service seen between phases, bytes. */
  readonly peakRss: number;
}

export interface Throughput {
  readonly variants: readonly VariantResult[];
  /** Index in variants of the one production runs. */
  readonly production: number;
  readonly direct: Record<OpKey, PhaseResult>;
}

const OPS = [
  ["create", "CreateSession"],
  ["get", "GetSession"],
  ["extend", "ExtendSession"],
  ["close", "CloseSession"],
] as const;

/** Phases in which calls failed, by name. */
export function failedPhases(t: Throughput): string[] {
  const phases = [...t.variants.flatMap((v) => [v.check, ...Object.values(v.service)]), ...Object.values(t.direct)];
  return phases.filter((p) => p.errors > 0).map((p) => `${p.target === "direct" ? "direct " : ""}${p.name}`);
}

function renderThroughput(lines: string[], t: Throughput, m: MachineInfo): void {
  const v = t.variants[t.production] as VariantResult;
  lines.push(`## Throughput and latency (production flags: ${flagsLabel(v.flags)})`, "");
  lines.push("| Operation | gRPC ops/s | p50 ms | p99 ms | direct ioredis ops/s | p50 ms | p99 ms | service / direct |");
  lines.push("|---|---:|---:|---:|---:|---:|---:|---:|");
  for (const [key, name] of OPS) {
    const s = v.service[key];
    const d = t.direct[key];
    lines.push(
      `| ${name}${errorNote(s)} | ${fmtInt(s.opsPerSec)} | ${fmtMs(s.p50Ms)} | ${fmtMs(s.p99Ms)} | ${fmtInt(d.opsPerSec)}${errorNote(d)} | ${fmtMs(d.p50Ms)} | ${fmtMs(d.p99Ms)} | ${fmtPct(s.opsPerSec / d.opsPerSec)} |`,
    );
  }
  const c = v.check;
  lines.push(`| Health/Check${errorNote(c)} | ${fmtInt(c.opsPerSec)} | ${fmtMs(c.p50Ms)} | ${fmtMs(c.p99Ms)} | | | | |`, "");
  const phases = [...t.variants.flatMap((x) => [x.check, ...Object.values(x.service)]), ...Object.values(t.direct)];
  const short = phases.filter((p) => p.windowMs < p.runs * ROUND_MS - 1);
  for (const p of short) lines.push(`Note: ${p.name} (${p.target}) ran out of sessions: ${(p.windowMs / 1000).toFixed(1)} s measured in all.`);
  if (short.length > 0) lines.push("");
  lines.push("Throughput of each round (ops/s), to show how steady the machine was:", "");
  for (const p of [c, ...Object.values(v.service), ...Object.values(t.direct)]) {
    lines.push(`- ${p.target === "direct" ? "direct " : ""}${p.name}: ${p.runOpsPerSec.map(fmtInt).join(", ")}`);
  }
  lines.push("");
  lines.push(
    "Direct ioredis floor: create = MULTI(HSET of the same record fields, PEXPIRE), get = HGETALL, extend = PEXPIRE, close = DEL; no indexes, counters, archive or events.",
    "",
  );

  lines.push("## CPU time per call", "");
  lines.push(
    `Each process's CPU time over the phases (warm-up and settling included) divided by the successful calls; the service's is read inside its own process, GC being its main thread's GC pauses. "${m.cores}-core ceiling" is ${m.cores} cores' worth of CPU divided by the three processes' CPU per call: the throughput this machine would reach if CPU were the only limit.`,
    "",
  );
  lines.push("| Operation | service µs/call | of which GC | load generator µs/call | redis-server µs/call | ceiling ops/s |");
  lines.push("|---|---:|---:|---:|---:|---:|");
  for (const [p, name] of [[c, "Health/Check"], ...OPS.map(([key, n]) => [v.service[key], n] as const)] as const) {
    lines.push(
      `| ${name} | ${fmtUs(p.serverCpuUsPerOp)} | ${fmtUs(p.serverGcUsPerOp)} (${fmtPct(p.serverGcUsPerOp / p.serverCpuUsPerOp)}) | ${fmtUs(p.clientCpuUsPerOp)} | ${fmtUs(p.redisCpuUsPerOp)} | ${fmtInt(cpuCeiling(p, m.cores))} |`,
    );
  }
  for (const [key, name] of OPS) {
    const p = t.direct[key];
    lines.push(`| direct ${name} | - | - | ${fmtUs(p.clientCpuUsPerOp)} | ${fmtUs(p.redisCpuUsPerOp)} | |`);
  }
  const getCpu = c.serverCpuUsPerOp / v.service.get.serverCpuUsPerOp;
  const createCpu = c.serverCpuUsPerOp / v.service.create.serverCpuUsPerOp;
  lines.push(
    "",
    `Service CPU per Health/Check ÷ per call, the throughput ratio a service with cores of its own would show: GetSession ${fmtPct(getCpu)} (target ≥ ${fmtPct(TARGETS.getOverCheck)}), CreateSession ${fmtPct(createCpu)} (target ≥ ${fmtPct(TARGETS.createOverCheck)}).`,
    "",
  );

  renderAb(lines, t);
}

function renderAb(lines: string[], t: Throughput): void {
  const [a, b] = t.variants;
  if (a === undefined || b === undefined) return;
  lines.push(`## Node flags: ${flagsLabel(b.flags)} against ${flagsLabel(a.flags)}`, "");
  lines.push(
    `Two copies of the service ran side by side, each with its own redis-server and load generator (the idle copy costs next to nothing); their rounds alternated, ${flagsLabel(a.flags)} first in odd rounds and ${flagsLabel(b.flags)} first in even ones. B/A is the median over the ${ROUNDS} rounds of B's throughput over A's in the same round.`,
    "",
  );
  lines.push("| Operation | A ops/s | B ops/s | B/A median | B/A each round | A µs/call (GC) | B µs/call (GC) |");
  lines.push("|---|---:|---:|---:|---|---:|---:|");
  const rows: [string, PhaseResult, PhaseResult][] = [["Health/Check", a.check, b.check], ...OPS.map(([key, name]) => [name, a.service[key], b.service[key]] as [string, PhaseResult, PhaseResult])];
  for (const [name, pa, pb] of rows) {
    lines.push(
      `| ${name} | ${fmtInt(pa.opsPerSec)} | ${fmtInt(pb.opsPerSec)} | ${fmtPct(medianRatio(pb, pa))} | ${roundRatios(pb, pa).map((x) => x.toFixed(2)).join(", ")} | ${fmtUs(pa.serverCpuUsPerOp)} (${fmtUs(pa.serverGcUsPerOp)}) | ${fmtUs(pb.serverCpuUsPerOp)} (${fmtUs(pb.serverGcUsPerOp)}) |`,
    );
  }
  const ratios = rows.flatMap(([, pa, pb]) => roundRatios(pb, pa));
  const wins = ratios.filter((x) => x > 1).length;
  const cpu = (v: VariantResult): number => [v.check, ...Object.values(v.service)].reduce((n, p) => n + p.serverCpuUsPerOp, 0);
  const gc = (v: VariantResult): number => [v.check, ...Object.values(v.service)].reduce((n, p) => n + p.serverGcUsPerOp, 0);
  lines.push(
    "",
    `Over all ${ratios.length} (operation, round) pairs: B/A median ${fmtPct(median(ratios))}, B faster in ${wins}. Service CPU per call summed over the five operations: A ${fmtUs(cpu(a))} µs (GC ${fmtPct(gc(a) / cpu(a))}), B ${fmtUs(cpu(b))} µs (GC ${fmtPct(gc(b) / cpu(b))}). The price: the service's largest resident set seen between phases, A ${(a.peakRss / 2 ** 20).toFixed(0)} MiB, B ${(b.peakRss / 2 ** 20).toFixed(0)} MiB. The targets above are judged on ${t.production === 0 ? "A" : "B"} (${flagsLabel(t.variants[t.production]?.flags ?? [])}), what \`npm run start:prod\` runs.`,
    "",
  );
}
