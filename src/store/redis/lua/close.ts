// Lua source of the close script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const closeLua = String.raw`
-- close: ARGV[OP..] = sessionId, its index member ("": made here; see member_is)
-- Returns {"ok", archived record..., [request id]} or {"not_found"|"ended"}; the
-- request id follows when it has a claim in another partition (lua/claim.ts).
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]
member_is(sid, ARGV[OP + 1])

local rec, arch = load_session(tp, T, sid)
if not rec then
  if arch then return { 'ended' } end
  return { 'not_found' }
end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
local out = append({ 'ok' }, end_session(tp, T, sid, rec, 'closed', NOW))
if rec.rc then out[#out + 1] = rec.r end
return out
`;
