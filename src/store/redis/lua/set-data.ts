// Lua source of the set_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const setDataLua = String.raw`
-- set_data: ARGV[OP..] = sessionId, key, value, maxDataBytes (0: no cap), the key as its
--   event logs it, aliases of the key (other stored forms, removed by the write)...
-- Returns {"ok", version} or {"not_found"|"permission_denied"|"limit_exceeded", detail}.
-- The record's field b keeps the bytes of all data values (see delete_data, clear_data).
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, key, value = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2]
local max_bytes = tonumber(ARGV[OP + 3]) or 0

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
if not can_write(rec.l) then return { 'permission_denied' } end
local dkey = k_data(tp, sid)
local aliases = { unpack(ARGV, OP + 5) }
local held, old = rcall('HEXISTS', dkey, key) == 1, rcall('HSTRLEN', dkey, key)
for _, alias in ipairs(aliases) do
  if rcall('HEXISTS', dkey, alias) == 1 then
    held = true
    old = old + rcall('HSTRLEN', dkey, alias)
  end
end
if not held and rcall('HLEN', dkey) >= MAX_DATA_KEYS then
  return { 'limit_exceeded', 'data_keys' }
end
local bytes = math.max(0, (tonumber(rec.b) or 0) - old) + #value
if max_bytes > 0 and bytes > max_bytes then return { 'limit_exceeded', 'data_bytes' } end
if #aliases > 0 then rcall('HDEL', dkey, unpack(aliases)) end
rcall('HSET', dkey, key, value)
rcall('HSET', k_rec(tp, sid), 'b', istr(bytes))
rcall('PEXPIREAT', dkey, istr(tonumber(rec.e) + GRACE))
bump_version(tp, sid, rec, true)

emit(T, 'data_changed', encode_live(T, sid, rec), { ARGV[OP + 4] })
return { 'ok', rec.v }
`;
