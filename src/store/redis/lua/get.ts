// Lua source of the get script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const getLua = String.raw`
-- get: ARGV[OP..] = sessionId, touch "1"|"0", includeEnded "1"|"0"
-- Returns {"ok", record...} or {"not_found"}.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]
local rec, arch = load_session(tp, T, sid)
if rec then
  if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
  if ARGV[OP + 1] == '1' then touch(tp, sid, rec) end
  return append({ 'ok' }, encode_live(T, sid, rec))
end
if arch and ARGV[OP + 2] == '1' then return append({ 'ok' }, arch) end
return { 'not_found' }
`;
