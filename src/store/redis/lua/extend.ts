// Lua source of the extend script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const extendLua = String.raw`
-- extend: ARGV[OP..] = sessionId, ttlMs
-- Returns {"ok", record...} or {"not_found"|"ended"}.
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]
local ttl = tonumber(ARGV[OP + 1])

local rec, arch = load_session(tp, T, sid)
if not rec then
  if arch then return { 'ended' } end
  return { 'not_found' }
end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
local from = tonumber(rec.e)
rec.e = istr(NOW + ttl)
rec.v = istr(tonumber(rec.v) + 1)
redis.call('HSET', k_rec(tp, sid), 'e', rec.e, 'v', rec.v)
set_session_expiry(tp, sid, rec)
index_move(tp, T, sid, rec, from)

local out = encode_live(T, sid, rec)
emit(T, 'extended', out, nil)
return append({ 'ok' }, out)
`;
