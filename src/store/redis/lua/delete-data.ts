// Lua source of the delete_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const deleteDataLua = String.raw`
-- delete_data: ARGV[OP..] = sessionId, key, the key as its event logs it, aliases of
--   the key (other stored forms, removed too)...
-- Returns {"ok", deleted "1"|"0", version} or {"not_found"|"permission_denied"}.
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, key = ARGV[OP], ARGV[OP + 1]

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
if not can_write(rec.l) then return { 'permission_denied' } end
local names = { key, unpack(ARGV, OP + 3) }
local len = 0
for _, name in ipairs(names) do len = len + rcall('HSTRLEN', k_data(tp, sid), name) end
local deleted = math.min(1, rcall('HDEL', k_data(tp, sid), unpack(names)))
if deleted == 1 then
  rcall('HSET', k_rec(tp, sid), 'b', istr(math.max(0, (tonumber(rec.b) or 0) - len)))
end
bump_version(tp, sid, rec, true)

emit(T, 'data_changed', encode_live(T, sid, rec), { ARGV[OP + 2] })
return { 'ok', istr(deleted), rec.v }
`;
