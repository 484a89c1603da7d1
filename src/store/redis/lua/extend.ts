// Lua source of the extend script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const extendLua = String.raw`
-- extend: ARGV[OP..] = sessionId, ttlMs, claim slack (ms; "" with one partition),
--   claim end ("" or the new end (ms) of the request id's claim, see lua/claim.ts),
--   the session id's index member ("": made here; see member_is)
-- Returns {"ok", record...}, {"not_found"|"ended"}, or without writing
-- {"claim", requestId} when the request id's claim must first be made to last
-- past the new expire time plus the slack (request-claims.ts).
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]
local ttl = tonumber(ARGV[OP + 1])
member_is(sid, ARGV[OP + 4])

local rec, arch = load_session(tp, T, sid)
if not rec then
  if arch then return { 'ended' } end
  return { 'not_found' }
end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
local slack, claim_end = tonumber(ARGV[OP + 2]), tonumber(ARGV[OP + 3])
if rec.rc and slack then
  if claim_end then
    rec.rc = istr(math.max(claim_end, tonumber(rec.rc)))
    rcall('HSET', k_rec(tp, sid), 'rc', rec.rc)
  elseif NOW + ttl + slack > tonumber(rec.rc) then
    return { 'claim', rec.r }
  end
end
local from = tonumber(rec.e)
rec.e = istr(NOW + ttl)
rec.v = istr(tonumber(rec.v) + 1)
rcall('HSET', k_rec(tp, sid), 'e', rec.e, 'v', rec.v)
set_session_expiry(tp, sid, rec)
index_move(tp, T, sid, rec, from)

local out = encode_live(T, sid, rec)
emit(T, 'extended', out, nil)
return append({ 'ok' }, out)
`;
