// Lua source of the list script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const listLua = String.raw`
-- list: ARGV[OP..] = userId ("" for any), dataSource ("" for any), limit,
--   cursor expireTime ("" for none), cursor sessionId
-- Returns {"ok", more "1"|"0", record, record...} with live sessions ordered by
-- (expireTime, sessionId) strictly after the cursor.
--
-- By user: the user's index (filtering by data source here when both are given).
-- By data source: that index. Unfiltered: the tenant-wide index. Each reads
-- about one page of index members (plus ties of the cursor's expire time; see
-- index_after in lua/indexes.ts).
local T = ARGV[2]
local tp = tenant_prefix(T)
local uid, ds = ARGV[OP], ARGV[OP + 1]
local limit = tonumber(ARGV[OP + 2])
local after_e = tonumber(ARGV[OP + 3])
local after_sid = ARGV[OP + 4]
local want = limit + 1

local keep
if uid ~= '' and ds ~= '' then
  keep = function(sid) return rcall('HGET', k_rec(tp, sid), 'd') == ds end
end
local picked = index_after(tp, uid ~= '' and uid or nil, uid == '' and ds ~= '' and ds or nil, after_e, after_sid, want, keep)

local more = #picked > limit
local out = { 'ok', more and '1' or '0' }
for i = 1, math.min(#picked, limit) do
  local sid = picked[i][1]
  local rec = load_record(tp, sid)
  if rec then append(out, encode_live(T, sid, rec)) end
end
return out
`;
