// Lua source of the set_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const setDataLua = String.raw`
-- set_data: ARGV[OP..] = sessionId, key, value, maxDataBytes (0: no cap), the key as its event logs it
-- Returns {"ok", version} or {"not_found"|"permission_denied"|"limit_exceeded", detail}.
-- The record's field b keeps the bytes of all data values (see delete_data, clear_data).
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, key, value = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2]
local max_bytes = tonumber(ARGV[OP + 3]) or 0

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
if not can_write(rec.l) then return { 'permission_denied' } end
local dkey = k_data(tp, sid)
if redis.call('HEXISTS', dkey, key) == 0 and redis.call('HLEN', dkey) >= MAX_DATA_KEYS then
  return { 'limit_exceeded', 'data_keys' }
end
local bytes = math.max(0, (tonumber(rec.b) or 0) - redis.call('HSTRLEN', dkey, key)) + #value
if max_bytes > 0 and bytes > max_bytes then return { 'limit_exceeded', 'data_bytes' } end
redis.call('HSET', dkey, key, value)
redis.call('HSET', k_rec(tp, sid), 'b', istr(bytes))
redis.call('PEXPIREAT', dkey, istr(tonumber(rec.e) + GRACE))
bump_version(tp, sid, rec, true)

emit(T, 'data_changed', encode_live(T, sid, rec), { ARGV[OP + 4] })
return { 'ok', rec.v }
`;
