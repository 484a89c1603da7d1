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
import { withinDeadline } from "../observability/loop-aware-deadline.js";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import type { SessionStore, StoreProblem, StoreProblems } from "../store/store.js";

/** The empty name asks for the health of the server as a whole (grpc health-checking protocol). */
export const OVERALL_SERVICE = "";

/** Every service this server reports on. Each depends on the store alone, so they share one status. */
export const HEALTH_SERVICES: readonly string[] = [OVERALL_SERVICE, SessionService.typeName];

/** Something besides the store that the server needs to serve (e.g. the event reader reading). */
export interface ReadinessCondition {
  /** Why the server is not ready while the condition fails, e.g. "event reader not reading". */
  readonly reason: string;
  ok(): boolean;
  /** Calls the listener when ok() may have changed; returns the remover. */
  watch(listener: () => void): () => void;
}

/** Why readiness reports each store problem. */
const PROBLEM_REASONS: Readonly<Record<StoreProblem, string>> = {
  eviction_policy: "redis maxmemory-policy evicts keys",
  memory_full: "redis memory full: writes refused",
};

export interface HealthMonitorOptions {
  /** ping(), and watchReadiness() and problems() when the store has them. */
  readonly store: Pick<SessionStore, "ping" | "watchReadiness" | "problems">;
  readonly conditions?: readonly ReadinessCondition[];
  /** Store problems an operator accepted (ALLOW_REDIS_EVICTION): reported, not NOT_SERVING. */
  readonly acceptedProblems?: readonly StoreProblem[];
  /** Told the store's problems after every check that could read them (for metrics). */
  readonly onProblems?: (problems: StoreProblems) => void;
  /** Time between two pings. */
  readonly intervalMs: number;
  /**
   * A ping that has not answered after this long counts as a failure, so a
   * store that hangs (rather than refusing) is still reported. Counted in loop
   * idle time (observability/loop-aware-deadline.ts). Defaults to intervalMs.
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
  /**
   * Parts reported under names of their own (e.g. "sessiond.archive") and
   * left out of the overall status: their failure does not stop the server
   * from serving sessions, so it must not take the replica out of rotation.
   */
  readonly components?: ReadonlyMap<string, HealthComponent>;
}

/** A part of the server with a status of its own (see HealthMonitorOptions.components). */
export interface HealthComponent {
  serving(): boolean;
  /** Calls the listener when serving() may have changed; returns the function that unsubscribes. */
  subscribe(listener: () => void): () => void;
}

/** Called after the status of every service has been updated; read the new one with status(). */
export type HealthListener = () => void;

export class HealthMonitor {
  readonly #store: Pick<SessionStore, "ping" | "watchReadiness" | "problems">;
  readonly #conditions: readonly ReadinessCondition[];
  readonly #accepted: ReadonlySet<StoreProblem>;
  readonly #onProblems: ((problems: StoreProblems) => void) | undefined;
  #unwatchConditions: (() => void)[] = [];
  /** Why the last check found the server not ready (undefined: ready, or not known yet). */
  #reason: string | undefined = "starting";
  /** Problems found by the last check, and not accepted. */
  #problems: readonly StoreProblem[] = [];
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
  readonly #components: ReadonlyMap<string, HealthComponent>;
  readonly #unsubscribeComponents: (() => void)[] = [];

  constructor(options: HealthMonitorOptions) {
    if (!(options.intervalMs > 0)) throw new RangeError("HealthMonitor: intervalMs must be positive");
    this.#store = options.store;
    this.#conditions = options.conditions ?? [];
    this.#accepted = new Set(options.acceptedProblems ?? []);
    this.#onProblems = options.onProblems;
    this.#intervalMs = options.intervalMs;
    this.#timeoutMs = options.timeoutMs ?? options.intervalMs;
    this.#logger = options.logger;
    this.#problem = options.problem;
    this.#components = options.components ?? new Map();
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
    for (const component of this.#components.values()) {
      this.#unsubscribeComponents.push(component.subscribe(() => this.#notify()));
    }
    this.#unwatchReadiness = this.#store.watchReadiness?.((ready) => {
      this.#connectionsReady = ready;
      // Down: at once, no ping needed. Up: confirm with a ping before SERVING.
      if (!ready) this.#set(false, "store unreachable");
      else void this.check();
    });
    for (const condition of this.#conditions) {
      this.#unwatchConditions.push(
        condition.watch(() => {
          // Failing: at once. Passing again: confirm with a check before SERVING.
          // A dropped connection, then a known store problem, is the cause worth naming when both hold.
          if (!condition.ok()) this.#set(false, this.#notReadyReason(condition.reason));
          else void this.check();
        }),
      );
    }
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
    for (const unwatch of this.#unwatchConditions) unwatch();
    this.#unwatchConditions = [];
    for (const unsubscribe of this.#unsubscribeComponents.splice(0)) unsubscribe();
    this.#stopped.abort();
    this.#set(false, "shutting down");
    this.#listeners.clear();
  }

  /** Aborted by stop(), so long-lived readers (Watch) can end. */
  get stopSignal(): AbortSignal {
    return this.#stopped.signal;
  }

  /** The cached status of a service, or undefined for a service this server does not know. */
  status(service: string): ServingStatus | undefined {
    const component = this.#components.get(service);
    if (component !== undefined) return component.serving() && !this.#stopped.signal.aborted ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    if (!HEALTH_SERVICES.includes(service)) return undefined;
    return this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** Why the server is not serving (undefined while it is). */
  notServingReason(): string | undefined {
    return this.#serving ? undefined : (this.#reason ?? "store unreachable");
  }

  /** Problems of the store the last check found and nobody accepted. */
  get problems(): readonly StoreProblem[] {
    return this.#problems;
  }

  /** The status of every known service. */
  statuses(): Map<string, ServingStatus> {
    const status = this.#serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
    const all = new Map(HEALTH_SERVICES.map((service) => [service, status]));
    for (const name of this.#components.keys()) all.set(name, this.status(name) ?? ServingStatus.NOT_SERVING);
    return all;
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
      const problems = ok ? await this.#readProblems() : [];
      if (this.#stopped.signal.aborted) return;
      // A ping that answered just before a connection dropped must not bring SERVING back.
      const failing = this.#conditions.find((c) => !c.ok());
      const problem = problems[0];
      const own = this.#problem?.();
      // A store problem (memory full, eviction) is named before a failing condition: it is
      // the cause an operator must act on, and it can fail a condition too.
      if (!ok) this.#set(false, "store unreachable");
      else if (problem !== undefined || failing !== undefined) this.#set(false, this.#notReadyReason(failing?.reason ?? ""));
      else if (own !== undefined) this.#set(false, own);
      else this.#set(true, undefined);
    } finally {
      this.#pinging = false;
    }
  }

  /** The reason to report when `conditionReason` fails: an unreachable store or a store problem comes first. */
  #notReadyReason(conditionReason: string): string {
    if (!this.#connectionsReady) return "store unreachable";
    const problem = this.#problems[0];
    return problem !== undefined ? PROBLEM_REASONS[problem] : conditionReason;
  }

  async #ping(): Promise<boolean> {
    try {
      // Loop-aware: a ping answered while this process was busy is an answer, not a down store.
      await withinDeadline(this.#store.ping(), this.#timeoutMs, () => new Error("ping timed out"));
      return true;
    } catch {
      return false;
    }
  }

  /** The store's problems that are not accepted; none when they cannot be read (the ping decides then). */
  async #readProblems(): Promise<readonly StoreProblem[]> {
    if (this.#store.problems === undefined) return [];
    let found: StoreProblems;
    try {
      found = await this.#store.problems();
    } catch {
      return this.#problems;
    }
    this.#onProblems?.(found);
    const open = found.problems.filter((p) => !this.#accepted.has(p));
    for (const problem of open) {
      if (!this.#problems.includes(problem)) this.#logger?.error({ problem, evictionPolicy: found.evictionPolicy }, `store problem: ${PROBLEM_REASONS[problem]}`);
    }
    this.#problems = open;
    return open;
  }

  #set(serving: boolean, reason: string | undefined): void {
    const before = this.#reason;
    this.#reason = reason;
    if (serving === this.#serving) {
      if (!serving && reason !== before && !this.#stopped.signal.aborted) this.#logger?.warn({ reason }, "health status NOT_SERVING");
      return;
    }
    this.#serving = serving;
    if (serving) this.#logger?.info("store reachable: health status SERVING");
    else if (!this.#stopped.signal.aborted) this.#logger?.warn({ reason }, "health status NOT_SERVING");
    this.#notify();
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}
