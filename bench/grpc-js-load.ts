/**
 * A @grpc/grpc-js client as a load generator: `concurrency` unary calls in
 * flight on one channel (one HTTP/2 connection, as a grpc-js user has) for
 * `durationMs`, each sending the same request bytes. Prints one JSON line:
 * calls, errors, the first error, and latency percentiles.
 *
 *   node --import tsx bench/grpc-js-load.ts '{"port":8080,"path":"/grpc.health.v1.Health/Check","requestHex":"","concurrency":64,"durationMs":3000}'
 */
import * as grpc from "@grpc/grpc-js";

interface LoadArgs {
  readonly port: number;
  readonly path: string;
  readonly requestHex: string;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly warmupMs?: number;
}

export interface GrpcJsLoadResult {
  readonly calls: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

const args = JSON.parse(process.argv[2] ?? "{}") as LoadArgs;
const identity = (b: Buffer): Buffer => b;
const client = new grpc.Client(`127.0.0.1:${args.port}`, grpc.credentials.createInsecure());
const request = Buffer.from(args.requestHex, "hex");

function call(): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(args.path, identity, identity, request, (error) => resolve(error));
  });
}

async function drive(untilMs: number, record: boolean, latencies: number[], outcome: { errors: number; firstError?: string }): Promise<void> {
  while (Date.now() < untilMs) {
    const started = performance.now();
    const error = await call();
    if (!record) continue;
    if (error === null) latencies.push(performance.now() - started);
    else {
      outcome.errors++;
      outcome.firstError ??= `${grpc.status[error.code]}: ${error.details}`;
    }
  }
}

const warmupUntil = Date.now() + (args.warmupMs ?? 0);
await Promise.all(Array.from({ length: args.concurrency }, () => drive(warmupUntil, false, [], { errors: 0 })));
const latencies: number[] = [];
const outcome: { errors: number; firstError?: string } = { errors: 0 };
const started = performance.now();
await Promise.all(Array.from({ length: args.concurrency }, () => drive(Date.now() + args.durationMs, true, latencies, outcome)));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
const result: GrpcJsLoadResult = { calls: latencies.length, errors: outcome.errors, ...(outcome.firstError === undefined ? {} : { firstError: outcome.firstError }), seconds, p50Ms: at(0.5), p99Ms: at(0.99) };
process.stdout.write(`${JSON.stringify(result)}\n`);
client.close();
process.exit(0);
