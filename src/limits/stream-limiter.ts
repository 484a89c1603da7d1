/**
 * Caps long-lived streams (Health/Watch, WatchSessions, reflection) per
 * connection and per process, counted when the request's headers arrive,
 * before authentication: an unauthenticated caller can open them too (health
 * and reflection are open by default), and each one holds a handler, a
 * subscription and HTTP/2 buffers until the caller lets go. Beyond a cap the
 * stream is refused with RESOURCE_EXHAUSTED and holds nothing.
 */
export type StreamLimitReason = "streams_per_connection" | "streams_per_process";

export class StreamLimiter {
  private total = 0;
  private readonly perConnection = new WeakMap<object, number>();

  constructor(
    readonly maxPerConnection: number,
    readonly maxPerProcess: number,
  ) {}

  get open(): number {
    return this.total;
  }

  /**
   * Admits one more stream on `connection` (any object that stands for it,
   * e.g. its socket), returning its release (idempotent), or the reason it
   * is refused.
   */
  acquire(connection: object): (() => void) | StreamLimitReason {
    const onConnection = this.perConnection.get(connection) ?? 0;
    if (onConnection >= this.maxPerConnection) return "streams_per_connection";
    if (this.total >= this.maxPerProcess) return "streams_per_process";
    this.total += 1;
    this.perConnection.set(connection, onConnection + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total -= 1;
      this.perConnection.set(connection, (this.perConnection.get(connection) ?? 1) - 1);
    };
  }

  /** Long-lived stream RPCs by request path. */
  static isLongLived(path: string): boolean {
    return LONG_LIVED_PATHS.has(path);
  }
}

const LONG_LIVED_PATHS: ReadonlySet<string> = new Set([
  "/grpc.health.v1.Health/Watch",
  "/session.v1.SessionService/WatchSessions",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]);
