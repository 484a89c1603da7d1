/**
 * The pre-dispatch gate: decides from a request's path, headers and peer
 * alone, before a byte of its body is read, whether the call may go on.
 * Any protocol path (the Connect adapter, a lean HTTP/2 handler, grpc-js)
 * calls it the same way and gets a principal or a rejection with its gRPC
 * code, so a caller without valid credentials costs no body read, no parse
 * and no handler.
 *
 * In order: long-lived streams are counted against their caps (whatever the
 * auth: see limits/stream-limiter.ts); the credentials are checked (session
 * RPCs always, health and reflection with AUTH_PROTECT_OPS); the principal's
 * scopes are checked against the RPC. Every rejection is reported once
 * (audit record or counted summary, see audit/rejection-reporter.ts).
 *
 * Paths that are not RPCs of ours pass untouched: the router answers them
 * (404) without reading a body.
 */
import { Code } from "@connectrpc/connect";
import { SessionService } from "../../gen/session/v1/session_pb.js";
import type { RejectionReporter } from "../audit/rejection-reporter.js";
import { StreamLimiter } from "../limits/stream-limiter.js";
import type { Authentication, Authenticator, CallCredentials } from "./authenticator.js";
import { PERMISSION_DENIED_MESSAGE, UNAUTHENTICATED_MESSAGE } from "./interceptor.js";
import { auditIdentity, hasScope, type PeerInfo, type Principal } from "./principal.js";
import { rpcPolicy } from "./rpc-scopes.js";

export type GateDecision =
  | {
      readonly allowed: true;
      /** Undefined when the RPC needs no authentication (health, reflection without AUTH_PROTECT_OPS). */
      readonly principal: Principal | undefined;
      /** Call when the call ends (frees its long-lived stream slot); idempotent. */
      readonly release: () => void;
    }
  | { readonly allowed: false; readonly code: Code; readonly message: string };

export interface RequestGateOptions {
  readonly authenticator: Authenticator;
  readonly reporter: RejectionReporter;
  readonly streams: StreamLimiter;
  readonly protectOps: boolean;
  /** Routed services' type names: a path outside them is not ours to judge. */
  readonly services: readonly string[];
}

export interface RequestGate {
  /**
   * `path` is "/package.Service/Method"; `credentials` the call's authorization and act-as headers;
   * `connection` any object standing for the caller's connection (its socket).
   */
  check(path: string, credentials: CallCredentials, peer: PeerInfo, connection: object): Promise<GateDecision>;
  /** check(), answered at once when no credential needs an asynchronous check (a JWT does): no promise per call then. */
  decide(path: string, credentials: CallCredentials, peer: PeerInfo, connection: object): GateDecision | Promise<GateDecision>;
}

const NOTHING = (): void => {};

/** The release of a decision that holds no slot (a caller need not wait for the call's end to run it). */
export const RELEASE_NOTHING: () => void = NOTHING;

/** Principals the gate established, by Node request, until the request is collected. */
const principals = new WeakMap<object, Principal>();

/** Hands the gate's principal for `request` to whoever builds the call's context (peer.ts). */
export function rememberPrincipal(request: object, principal: Principal): void {
  principals.set(request, principal);
}

/** The principal the gate established for this request, if any. */
export function principalOfRequest(request: object): Principal | undefined {
  return principals.get(request);
}
const SESSION_PREFIX = `/${SessionService.typeName}/`;

export function createRequestGate(options: RequestGateOptions): RequestGate {
  const { authenticator, reporter, streams, protectOps } = options;
  const services = new Set(options.services);
  const decide: RequestGate["decide"] = (path, credentials, peer, connection) => {
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash);
    if (slash <= 0 || !services.has(service)) return { allowed: true, principal: undefined, release: NOTHING };
    const method = path.slice(1);
    let release = NOTHING;
    if (StreamLimiter.isLongLived(path)) {
      const slot = streams.acquire(connection);
      if (typeof slot === "string") {
        reporter.report({ kind: "stream", reason: slot, outcome: "resource_exhausted", peer: peer.address, method });
        const where = slot === "streams_per_connection" ? "this connection" : "this server";
        return { allowed: false, code: Code.ResourceExhausted, message: `too many long-lived streams on ${where}: close some or use another connection` };
      }
      release = slot;
    }
    const isSession = path.startsWith(SESSION_PREFIX);
    if (!isSession && !protectOps) return { allowed: true, principal: undefined, release };
    let authentication: ReturnType<Authenticator["authenticate"]>;
    try {
      authentication = authenticator.authenticate(credentials, peer);
    } catch (error) {
      release();
      throw error;
    }
    const held = release;
    if (authentication instanceof Promise) {
      return authentication.then(
        (settled) => judge(settled, path, isSession, peer, method, held),
        (error: unknown) => {
          held();
          throw error;
        },
      );
    }
    return judge(authentication, path, isSession, peer, method, held);
  };

  /** The decision on an authenticated (or not) call. */
  function judge(
    authentication: Authentication,
    path: string,
    isSession: boolean,
    peer: PeerInfo,
    method: string,
    release: () => void,
  ): GateDecision {
    if (!authentication.ok && authentication.outcome === "unauthenticated") {
      release();
      reporter.report({ kind: "request", reason: "unauthenticated", outcome: "unauthenticated", operation: "authenticate", peer: peer.address, method });
      return { allowed: false, code: Code.Unauthenticated, message: UNAUTHENTICATED_MESSAGE };
    }
    if (!authentication.ok) {
      // A valid credential whose act-as header is refused (delegation.ts); the header's value is not recorded.
      release();
      reporter.report({
        kind: "request",
        reason: `act_as_${authentication.outcome}`,
        outcome: authentication.outcome,
        operation: "authorize",
        peer: peer.address,
        method,
        identity: auditIdentity(authentication.principal),
      });
      return { allowed: false, code: authentication.outcome === "permission_denied" ? Code.PermissionDenied : Code.InvalidArgument, message: authentication.message };
    }
    const principal = authentication.principal;
    if (isSession && !hasScope(principal, rpcPolicy(path.slice(SESSION_PREFIX.length)).scope)) {
      release();
      reporter.report({
        kind: "request",
        reason: "permission_denied",
        outcome: "permission_denied",
        operation: "authorize",
        peer: peer.address,
        method,
        identity: auditIdentity(principal),
      });
      return { allowed: false, code: Code.PermissionDenied, message: PERMISSION_DENIED_MESSAGE };
    }
    return { allowed: true, principal, release };
  }

  return {
    decide,
    async check(path, credentials, peer, connection) {
      return decide(path, credentials, peer, connection);
    },
  };
}
