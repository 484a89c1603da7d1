/**
 * Runs the pre-dispatch gate (auth/request-gate.ts) in the HTTP request
 * handler, before the Connect adapter starts reading the body: a refused
 * request is answered here (writeRpcError) and never reaches the adapter;
 * an admitted one carries its principal to the call's context values
 * (principalOfRequest in auth/request-gate.ts) and frees its long-lived stream slot when its
 * response closes.
 */
import { ACT_AS_HEADER } from "../auth/delegation.js";
import { peerOf } from "../auth/peer.js";
import { rememberPrincipal, type RequestGate } from "../auth/request-gate.js";
import { writeRpcError } from "./rpc-error-response.js";
import type { RequestHandler } from "./single-port-server.js";

export function withRequestGate(next: RequestHandler, gate: RequestGate, onError: (error: unknown) => void): RequestHandler {
  return (req, res) => {
    const url = req.url ?? "";
    const query = url.indexOf("?");
    const path = query === -1 ? url : url.slice(0, query);
    const authorization = req.headers.authorization;
    const actAs = req.headers[ACT_AS_HEADER];
    const connection: object = "stream" in req ? (req.stream.session ?? req.stream) : req.socket;
    // Listening from the start: a caller that leaves while the gate decides must still free its slot.
    let closed = false;
    let release: (() => void) | undefined;
    res.once("close", () => {
      closed = true;
      release?.();
    });
    const credentials = { authorization: typeof authorization === "string" ? authorization : null, actAs: typeof actAs === "string" ? actAs : null };
    gate.check(path, credentials, peerOf(req), connection).then(
      (decision) => {
        if (!decision.allowed) {
          if (!closed) writeRpcError(req, res, decision.code, decision.message);
          return;
        }
        release = decision.release;
        if (closed) {
          release();
          return;
        }
        if (decision.principal !== undefined) rememberPrincipal(req, decision.principal);
        next(req, res);
      },
      (error: unknown) => {
        onError(error);
        if (!res.headersSent) res.destroy();
      },
    );
  };
}
