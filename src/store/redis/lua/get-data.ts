// Lua source of the get_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const getDataLua = String.raw`
-- get_data: ARGV[OP..] = sessionId, key
-- Returns {"ok", found "1"|"0", value} or {"not_found"}. Records the access time.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, key = ARGV[OP], ARGV[OP + 1]

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
touch(tp, sid, rec)
local value = rcall('HGET', k_data(tp, sid), key)
if value then return { 'ok', '1', value } end
return { 'ok', '0', '' }
`;
