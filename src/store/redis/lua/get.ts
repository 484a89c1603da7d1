// Lua source of the get script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const getLua = String.raw`
-- get: ARGV[OP..] = sessionId, flags: touch then includeEnded, each "1"|"0" ("10": touch only)
-- Returns {"ok", live record} without the reply header (the short form of decodeLiveRecord in
-- record-codec.ts: a reply's strings cost Redis and the reader each), {"ok",
-- record...} for an ended session, or {"not_found"}.
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid, flags = ARGV[OP], ARGV[OP + 1]
-- A live record answers from one HMGET of the fields it replies with (no
-- table of the whole hash); a missing record or one due to expire goes the
-- general way (load_session: the archive, expiry on read).
local key = k_rec(tp, sid)
local f = rcall('HMGET', key, 'u', 'd', 'l', 'c', 'e', 'a', 'm', 'v', 'U', 'D', 'mt')
local u, d, e = f[1], f[2], f[5]
-- Expire times are decimal integers: of one length with NOW's, the later one
-- compares greater as text (tonumber is dear).
local now = istr(NOW)
if u and (#e == #now and e > now or #e ~= #now and tonumber(e) > NOW) then
  if GUARD_USER ~= '' and not GUARD_NAMES[u] then return { 'not_found' } end
  local level = LEVEL_NAMES[f[3]] or f[3]
  if GUARD_USER ~= '' and guard_denies(level) then return { 'permission_denied', 'level' } end
  local a = f[6]
  if flags == '10' or flags == '11' then a = touched(key, a) end
  local numbers, U, D, mt = level .. ' ' .. f[4] .. ' ' .. e .. ' ' .. a .. ' ' .. f[8], f[9], f[10], f[11]
  -- Without the reply header (with_header in scripts.ts; RedisStore.runScript
  -- knows a reply that starts with "ok"): nothing expired on the way, and the
  -- caller needs no clock. Each string of a reply costs Redis and the reader.
  -- A record written with encryption off has no sealed fields: none are sent.
  if not (U or D or mt) then return { 'ok', u, d, f[7], numbers }, true end
  return { 'ok', u, d, f[7], numbers, U or '', D or sealed_source_of(T, nil, U, d), mt or '' }, true
end
local rec, arch = load_session(tp, T, sid)
if rec then
  if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
  if flags == '10' or flags == '11' then touch(tp, sid, rec) end
  return append({ 'ok' }, encode_live(T, sid, rec))
end
if arch and (flags == '01' or flags == '11') then return append({ 'ok' }, arch) end
return { 'not_found' }
`;
