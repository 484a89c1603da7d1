/**
 * Keeps the serving status that grpc.health.v1.Health reports, by pinging the
 * store on a timer.
 *
 * Health probes (Kubernetes, load balancers) are frequent and many; answering
 * each one with a Redis round trip would put probe load on Redis and make a
 * probe as slow as Redis at its worst. So the status is cached here and
 * refreshed every `intervalMs`; Check and List read the cache, and Watch
 * subscribers hear each change.
 */
import type { Logger } from "../logging/logger.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import type { SessionStore } from "../store/store.js";

/** The empty name asks for the health of the server as a whole (grpc health-checking protocol). */
export const OVERALL_SERVICE = "";

/** Every service this server reports on. Each depends on the store alone, so they share one status. */
export const HEALTH_SERVICES: readonly string[] = [OVERALL_SERVICE, SessionService.typeName];

export interface HealthMonitorOptions {
  /** ping(), and watchReadiness() when the store has it. */
  readonly store: Pick<SessionStore, "ping" | "watchReadiness">;
  /** Time between two pings. */
  readonly intervalMs: number;
  /**
   * A ping that has not answered after this long counts as a failure, so a
   * store that hangs (rather than refusing) is still reported. Defaults to intervalMs.
   */
  readonly timeoutMs?: number;
  /** Status changes are logged here (warn when the store goes down, info when it comes back). */
  readonly logger?: Logger;
  /**
   * A problem of this process that makes it unfit to serve although the store
   * answers (e.g. an event reader that cannot advance), read at every check;
   * undefined when there is none.
   */
  readonly problem?: () => string | undefined;
}

/** Called after the status of every service has been updated; read the new one with status(). */
export type HealthListener = () => void;

export class HealthMonitor {
  readonly #store: Pick<SessionStore, "ping" | "watchReadiness">;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #logger: Logger | undefined;
  readonly #problem: (() => string | undefined) | undefined;
  readonly #listeners = new Set<HealthListener>();
  readonly #stopped = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  /** Until the first ping answers, nothing is known: NOT_SERVING keeps traffic away from a server that is still starting. */
  #serving = false;
  #pinging = false;
  /**
   * False from the moment the store says a connection dropped until it says
   * all are ready again: a cached SERVING must not outlive a dropped
   * connection until the next tick (after a Redis restart, probes said SERVING
   * while writes still failed with "reconnecting").
   */
  #connectionsReady = true;
  #unwatchReadiness: (() => void) | undefined;

  constructor(options: HealthMonitorOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError("HealthMonitor: intervalMs must be positive");
    this.#store = options.store;
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs ?? options.intervalMs;
    this.#logger = options.logger;
    this.#problem = options.problem;
  }

  /**
   * Starts pinging: once right away, then every intervalMs. The timer is
   * unref'd so that it never keeps the process alive on its own. The returned
   * promise settles (never rejects) when the first ping has answered, for a
   * caller that wants a known status before it starts listening.
   */
  start(): Promise<void> {
    if (this.#stopped.signal.aborted) throw new Error("HealthMonitor: cannot start after stop()");
    if (this.#timer !== undefined) return Promise.resolve();
    this.#timer = setInterval(() => void this.check(), this.#intervalMs);
    this.#timer.unref();
    this.#unwatchReadiness = this.#store.watchReadiness?.((ready) => {
      this.#connectionsReady = ready;
      // Down: at once, no ping needed. Up: confirm with a ping before SERVING.
      if (!ready) this.#set(false);
      else void this.check();
    });
    return this.check();
  }

  /**
   * Stops the timer, reports NOT_SERVING to every subscriber (the server is
   * going away, so clients should move on) and forgets them. Watch streams end
   * through `stopSignal`.
   */
  stop(): void {
    if (this.#stopped.signal.aborted) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unwatchReadiness?.();
    this.#unwatchReadiness = undefined;
    this.#stopped.abort();
    this.#set(false);
    this.#listeners.clear();
  }

  /** Aborted by stop(), so long-lived readers (Watch) can end. */
  get stopSignal(): AbortSignal {
    return this.#stopped.signal;
  }

  /** The cached status of a service, or undefined for a service this server does not know. */
  status(service: string): ServingStatus | undefined {
    if (!HEALTH_SERVICES.includes(service)) return undefined;
    return this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** The status of every known service. */
  statuses(): Map<string, ServingStatus> {
    const status = this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    return new Map(HEALTH_SERVICES.map((service) => [service, status]));
  }

  /** Calls the listener after every change of status; returns the function that unsubscribes it. */
  subscribe(listener: HealthListener): () => void {
    if (this.#stopped.signal.aborted) return () => {};
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Pings the store once and updates the status. A ping still running when the
   * next tick comes is not doubled: a slow store must not collect a pile of pings.
   */
  async check(): Promise<void> {
    if (this.#pinging || this.#stopped.signal.aborted) return;
    this.#pinging = true;
    try {
      const ok = await this.#ping();
      // A ping that answered just before a connection dropped must not bring SERVING back.
      if (!this.#stopped.signal.aborted) this.#set(ok && this.#connectionsReady && this.#problem?.() === undefined);
    } finally {
      this.#pinging = false;
    }
  }

  async #ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#timeoutMs);
      timer.unref();
    });
    const ping = this.#store.ping().then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([ping, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #set(serving: boolean): void {
    if (serving === this.#serving) return;
    this.#serving = serving;
    if (serving) this.#logger?.info("store reachable: health status SERVING");
    else if (!this.#stopped.signal.aborted) this.#logger?.warn({ reason: this.#problem?.() ?? "store unreachable" }, "health status NOT_SERVING");
    for (const listener of [...this.#listeners]) listener();
  }
}
