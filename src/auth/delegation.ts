/**
 * Delegation: a trusted backend (a principal with scope act_as and no user of
 * its own) names, per call, the user the call acts for in the
 * `sessiond-act-as` header. The call is then checked exactly as a call of a
 * principal bound to that user (session/access-policy.ts), and its audit
 * record carries both the backend's identity and the user.
 *
 * The header is never ignored: from a principal without act_as, or from one
 * already bound to a user, it is refused with PERMISSION_DENIED, so a caller
 * that believes the service enforces ownership for it learns at once that it
 * does not.
 */
import { hasScope, userProblem, type Principal } from "./principal.js";

/** The request header (gRPC metadata key) naming the acting user. */
export const ACT_AS_HEADER = "sessiond-act-as";

export type Delegation =
  | { readonly ok: true; readonly principal: Principal }
  | { readonly ok: false; readonly outcome: "permission_denied" | "invalid_argument"; readonly message: string };

/** The principal a call acts as, given its credential's principal and the act-as header (null: absent). */
export function applyDelegation(principal: Principal, header: string | null): Delegation {
  if (header === null) return { ok: true, principal };
  if (principal.user !== undefined || !hasScope(principal, "act_as")) {
    return { ok: false, outcome: "permission_denied", message: `${ACT_AS_HEADER}: the caller may not act for a user (needs scope act_as)` };
  }
  const problem = userProblem(header);
  if (problem !== undefined) return { ok: false, outcome: "invalid_argument", message: `${ACT_AS_HEADER}: ${problem}` };
  return { ok: true, principal: { ...principal, user: header, delegated: true } };
}
