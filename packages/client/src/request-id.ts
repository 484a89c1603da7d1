/**
 * Every CreateSession a client helper sends carries a request_id, so that a
 * retry after an unknown outcome cannot create a second session: the caller's
 * own id, or a random UUID. No dependency of either client, so both entries
 * (Connect and grpc-js) use it.
 */
import { randomUUID } from "node:crypto";

/** The request with a request_id: its own when it has one, else a new UUID. */
export function withRequestId<T extends { readonly requestId?: string }>(request: T): T {
  return request.requestId === undefined || request.requestId === "" ? { ...request, requestId: randomUUID() } : request;
}
