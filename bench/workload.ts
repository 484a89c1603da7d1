/**
 * The sessions the benchmark creates: 1000 users over 4 data sources, with
 * about 40 bytes of metadata, the same for the gRPC, direct and memory runs.
 */
import type { JsonObject } from "@bufbuild/protobuf";

const USERS = 1000;
const DATA_SOURCES = ["warehouse-a", "warehouse-b", "lake-eu", "lake-us"] as const;

export function benchUserId(n: number): string {
  return `user-${n % USERS}`;
}

export function benchDataSource(n: number): string {
  return DATA_SOURCES[n % DATA_SOURCES.length] ?? "warehouse-a";
}

/** Serializes to 40 bytes of JSON: {"app":"web","ip":"203.0.113.7","n":NNN}. */
export function benchMetadata(n: number): JsonObject {
  return { app: "web", ip: "203.0.113.7", n: 100 + (n % 900) };
}
