// Lua source of the create script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const createLua = String.raw`
-- create: ARGV[OP..] = sessionId, userId, dataSource, level, ttlMs, metadata, requestId
-- Returns {"ok", created "1"|"0", record...}.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, uid, ds, level = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2], ARGV[OP + 3]
local ttl, meta, rid = tonumber(ARGV[OP + 4]), ARGV[OP + 5], ARGV[OP + 6]

if rid ~= '' then
  local existing = redis.call('GET', k_req(tp, rid))
  if existing then
    -- A live session answers the retry; an ended one has freed the request id.
    local rec = load_session(tp, T, existing)
    if rec then return append({ 'ok', '0' }, encode_live(T, existing, rec)) end
  end
end

local rec = {
  u = uid, d = ds, l = level, c = istr(NOW), e = istr(NOW + ttl), a = istr(NOW), m = meta, v = '1',
}
local fields = { 'u', rec.u, 'd', rec.d, 'l', rec.l, 'c', rec.c, 'e', rec.e, 'a', rec.a, 'm', rec.m, 'v', rec.v }
if rid ~= '' then
  rec.r = rid
  fields[#fields + 1] = 'r'
  fields[#fields + 1] = rid
  redis.call('SET', k_req(tp, rid), sid)
end
redis.call('HSET', k_rec(tp, sid), unpack(fields))
set_session_expiry(tp, sid, rec)
index_add(tp, T, sid, rec)
ctr_incr(tp, 'total', 1)
ctr_gauge(tp, 'active', 1)
ctr_gauge(tp, 'l:' .. level, 1)
ctr_gauge(tp, 's:' .. ds, 1)

local out = encode_live(T, sid, rec)
emit(T, 'created', out, nil)
return append({ 'ok', '1' }, out)
`;
