/**
 * The background populations the scale and isolation benches load, by name,
 * so that a fill can be split over several processes (bench/fill-worker.ts):
 * one Node process creating sessions is the bottleneck of a fill (the create
 * script costs Redis less than the call costs its caller), and on a shared
 * machine a few processes get a fairer share of it.
 */
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CreateSessionInput } from "../src/store/store.js";
import { BenchSealer } from "./expiry-schedule.js";

const HERE = dirname(fileURLToPath(import.meta.url));

export interface Population {
  readonly name: "scale" | "neighbour";
  /** neighbour: its tenant and number of data sources. */
  readonly tenant?: string;
  readonly sources?: number;
}

/** Sessions of the scale bench: 10k users, 10 data sources, TTLs of 2–3 h; the first 100 belong to "list-user". */
export const LIST_USER_SESSIONS = 100;

/** The i-th session of a population; `sealer` seals metadata for a service with its keys. */
export function populationSession(population: Population, sealer: BenchSealer | undefined, i: number): CreateSessionInput {
  if (population.name === "scale") {
    const metadata = JSON.stringify({ client: "web", region: "eu-west-1", n: i % 100 });
    return {
      tenant: "default",
      ...(sealer === undefined ? { metadata } : sealer.sealed("default", metadata)),
      userId: i < LIST_USER_SESSIONS ? "list-user" : `user-${String(i % 10_000).padStart(5, "0")}`,
      dataSource: `source-${i % 10}`,
      accessLevel: i % 3 === 0 ? "write" : "read",
      ttlMs: 7_200_000 + (i % 3600) * 1000,
      requestId: "",
    };
  }
  return {
    tenant: population.tenant ?? "neighbour",
    userId: `user-${i % 50_000}`,
    dataSource: `source-${i % (population.sources ?? 10)}`,
    accessLevel: "read",
    ttlMs: 3_600_000 + (i % 1000) * 1000,
    metadata: '{"client":"web","region":"eu-west-1"}',
    requestId: "",
  };
}

export interface FillJob {
  readonly redisUrl: string;
  readonly keyPrefix: string;
  readonly population: Population;
  /** ENCRYPTION_KEYS to seal metadata with; absent: plain JSON. */
  readonly keys?: string;
  readonly from: number;
  readonly to: number;
}

/** Fills from..to-1 with `processes` child processes (bench/fill-worker.ts), each a contiguous share. */
export async function fillInProcesses(job: FillJob, processes: number): Promise<void> {
  const share = Math.ceil((job.to - job.from) / processes);
  const jobs = Array.from({ length: processes }, (_, p) => ({ ...job, from: job.from + p * share, to: Math.min(job.to, job.from + (p + 1) * share) })).filter((j) => j.from < j.to);
  await Promise.all(
    jobs.map(
      (j) =>
        new Promise<void>((resolve, reject) => {
          const child = spawn(process.execPath, ["--import", "tsx", join(HERE, "fill-worker.ts"), JSON.stringify(j)], { stdio: ["ignore", "ignore", "pipe"] });
          let err = "";
          child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
          child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`a fill process exited ${code}: ${err.trim().split("\n").at(-1) ?? ""}`))));
        }),
    ),
  );
}
