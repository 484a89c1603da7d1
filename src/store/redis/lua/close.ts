// Lua source of the close script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const closeLua = String.raw`
-- close: ARGV[OP..] = sessionId
-- Returns {"ok", archived record...} or {"not_found"|"ended"}.
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]

local rec, arch = load_session(tp, T, sid)
if not rec then
  if arch then return { 'ended' } end
  return { 'not_found' }
end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
return append({ 'ok' }, end_session(tp, T, sid, rec, 'closed', NOW))
`;
