// Lua source of the set_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const setDataLua = String.raw`
-- set_data: ARGV[OP..] = sessionId, key, value
-- Returns {"ok", version} or {"not_found"|"permission_denied"|"limit_exceeded"}.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, key, value = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2]

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if not can_write(rec.l) then return { 'permission_denied' } end
local dkey = k_data(tp, sid)
if redis.call('HEXISTS', dkey, key) == 0 and redis.call('HLEN', dkey) >= MAX_DATA_KEYS then
  return { 'limit_exceeded' }
end
redis.call('HSET', dkey, key, value)
redis.call('PEXPIREAT', dkey, istr(tonumber(rec.e) + GRACE))
bump_version(tp, sid, rec, true)

emit(T, 'data_changed', encode_live(T, sid, rec), { key })
return { 'ok', rec.v }
`;
