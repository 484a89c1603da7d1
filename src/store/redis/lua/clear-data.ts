// Lua source of the clear_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const clearDataLua = String.raw`
-- clear_data: ARGV[OP..] = sessionId
-- Returns {"ok", deletedCount, version} or {"not_found"|"permission_denied"}.
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
if not can_write(rec.l) then return { 'permission_denied' } end
local dkey = k_data(tp, sid)
local keys = {}
local flat = rcall('HGETALL', dkey)
for i = 1, #flat, 2 do keys[#keys + 1] = logged_key(flat[i], flat[i + 1]) end
rcall('DEL', dkey)
rcall('HSET', k_rec(tp, sid), 'b', '0')
bump_version(tp, sid, rec, true)

emit(T, 'data_changed', encode_live(T, sid, rec), keys)
return { 'ok', istr(#keys), rec.v }
`;
