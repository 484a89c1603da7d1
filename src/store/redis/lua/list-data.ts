// Lua source of the list_data script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const listDataLua = String.raw`
-- list_data: ARGV[OP..] = sessionId, includeValues "1"|"0"
-- Returns {"ok", key, value, key, value...} (values "" without includeValues)
-- or {"not_found"}. Records the access time. Keys are sorted by the caller.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]

local rec = load_session(tp, T, sid)
if not rec then return { 'not_found' } end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
touch(tp, sid, rec)
local out = { 'ok' }
if ARGV[OP + 1] == '1' then
  return append(out, rcall('HGETALL', k_data(tp, sid)))
end
local keys = rcall('HKEYS', k_data(tp, sid))
for i = 1, #keys do
  out[#out + 1] = keys[i]
  out[#out + 1] = ''
end
return out
`;
