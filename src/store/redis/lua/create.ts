// Lua source of the create script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const createLua = String.raw`
-- create: ARGV[OP..] = sessionId, userId, dataSource, level, ttlMs, metadata, requestId,
--   the caps ("" when none is set; else, space-separated: maxSessionsPerUser (0: no cap),
--   sessionsPerUserPolicy ("reject" | "close_oldest"), maxSessionsPerTenant (0: no cap; with
--   several partitions, what is left of the tenant's cap for this partition after the others'
--   live sessions; negative: nothing left), maxDataSourcesPerTenant (0: no cap; with several
--   partitions, likewise: see RedisStore.tenantCapsLeft); one argument, as createCaps in
--   redis-store.ts makes it: each argument of a call costs Redis its parsing and a Lua string),
--   sealed user, sealed data source, metadata tag ("" each without encryption),
--   claim end ("": the request id is kept here as k_req; else the end (ms) of its
--   claim in its own partition, see lua/claim.ts),
--   the session id's index member (its 16 bytes, keys.ts indexMember),
--   request id aliases (other stored forms of requestId, looked up too), ...
-- Returns {"ok", "1", sealed data source, evicted records...} for a new session,
-- {"ok", "0", record...} for the session an earlier create made,
-- {"ok", "lost"} when the claimed session id was made void (request-claims.ts), or
-- {"limit_exceeded", "sessions_per_user" | "sessions_per_tenant" | "data_sources_per_tenant"}.
-- before_writes() and tenant_prefix(T) without their calls where they would
-- answer at once (every create of a batch: a Lua call costs more than the check).
if SLOT_MOVING then refuse_moving_slot() end
local T = ARGV[2]
local tp = T == TP_T and TP or tenant_prefix(T)
local sid, uid, ds, level = ARGV[OP], ARGV[OP + 1], ARGV[OP + 2], ARGV[OP + 3]
-- '+ 0' converts once (tonumber converts twice: Lua 5.1 checks, then converts).
local ttl, meta, rid = ARGV[OP + 4] + 0, ARGV[OP + 5], ARGV[OP + 6]
local max_per_user, per_user_policy, max_per_tenant, max_sources = 0, 'reject', 0, 0
local caps = ARGV[OP + 7]
if caps ~= '' then
  local u, p, t, s = string.match(caps, '^(%S+) (%S+) (%S+) (%S+)$')
  if not u then error('malformed create caps: ' .. caps) end
  max_per_user, per_user_policy, max_per_tenant, max_sources = cap_arg(u), p, cap_arg(t), cap_arg(s)
end
local sealed_u, sealed_d, meta_tag = ARGV[OP + 8], ARGV[OP + 9], ARGV[OP + 10]
local claim_end = ARGV[OP + 11]
local member = ARGV[OP + 12]

if claim_end ~= '' then
  -- A create that took the claim over made this id void: it never gets a session.
  if rcall('EXISTS', k_void(tp, sid)) == 1 then return { 'ok', 'lost' } end
  -- The id exists already (this create ran before): answered as a retry.
  local rec, arch = load_session(tp, T, sid)
  if rec then return append({ 'ok', '0' }, encode_live(T, sid, rec)) end
  if arch then return { 'ok', 'lost' } end
end

-- With a claim, the lookup finds only sessions created before claims existed.
if rid ~= '' then
  local names = { rid }
  for i = OP + 13, #ARGV do names[#names + 1] = ARGV[i] end
  for _, name in ipairs(names) do
    local existing = rcall('GET', k_req(tp, name))
    if existing then
      -- A live session answers the retry; an ended one has freed the request id.
      local rec = load_session(tp, T, existing)
      if rec then return append({ 'ok', '0' }, encode_live(T, existing, rec)) end
    end
  end
end

-- Sessions per user: live sessions only (score > now; due ones do not count).
-- "close_oldest" closes the oldest by create time (then id) to make room.
-- evicted: the records closed to make room (nil: none; no table made for the common case).
local evicted
local live, excess = nil, 0
if max_per_user > 0 then
  live = user_live(tp, uid)
  excess = #live - max_per_user + 1
  if excess > 0 and per_user_policy ~= 'close_oldest' then return { 'limit_exceeded', 'sessions_per_user' } end
end
-- Tenant caps before anything changes (a refused create writes nothing). Live
-- sessions here include due ones not yet archived: the cap errs on the safe side.
if max_per_tenant ~= 0 then
  local active = ctr_active(tp)
  if active - math.max(excess, 0) >= max_per_tenant then return { 'limit_exceeded', 'sessions_per_tenant' } end
end
if not source_fits(tp, ds, max_sources) then return { 'limit_exceeded', 'data_sources_per_tenant' } end
if max_per_user > 0 then
  if excess > 0 then
    local cands = {}
    for _, id in ipairs(live) do
      local c = rcall('HGET', k_rec(tp, id), 'c')
      if c then cands[#cands + 1] = { tonumber(c), id } end
    end
    table.sort(cands, function(x, y)
      if x[1] ~= y[1] then return x[1] < y[1] end
      return x[2] < y[2]
    end)
    for i = 1, math.min(excess, #cands) do
      local id = cands[i][2]
      evicted = append(evicted or {}, end_session(tp, T, id, load_record(tp, id), 'closed', NOW))
    end
  end
end

local expire = NOW + ttl
local c = ISTR[NOW] or istr(NOW)
-- The new record as a table, for the steps below (CREATE_REC, filled in
-- place: a table made per create costs its allocation and the garbage
-- collector's work). The sealed data-source name is kept once per live data
-- source (name_source), not per record; the sealed user and metadata tag only
-- with encryption on.
local rec = CREATE_REC
rec.u, rec.d, rec.l, rec.c, rec.e, rec.a, rec.m, rec.v = uid, ds, level, c, ISTR[expire] or istr(expire), c, meta, '1'
rec.D, rec.U, rec.mt = sealed_d ~= '' and sealed_d or nil, sealed_u ~= '' and sealed_u or nil, meta_tag ~= '' and meta_tag or nil
rec.r, rec.rc = nil, nil
local fields = CREATE_FIELDS
fields[2], fields[4], fields[6], fields[8], fields[10], fields[12], fields[14] = uid, ds, LEVEL_CODES[level] or level_code(level), c, rec.e, c, meta
local nf = 16
if rec.U then
  fields[17], fields[18] = 'U', sealed_u
  nf = 18
end
if rec.mt then
  fields[nf + 1], fields[nf + 2] = 'mt', meta_tag
  nf = nf + 2
end
if rid ~= '' then
  rec.r = rid
  fields[nf + 1], fields[nf + 2] = 'r', rid
  nf = nf + 2
  if claim_end == '' then
    rcall('SET', k_req(tp, rid), sid)
  else
    -- How long the claim is known to last: extend renews it before the session outlives it.
    rec.rc = claim_end
    fields[nf + 1], fields[nf + 2] = 'rc', claim_end
    nf = nf + 2
  end
end
local rkey = k_rec(tp, sid)
rcall('HSET', rkey, unpack(fields, 1, nf))
set_session_expiry(tp, sid, rec, true, expire, rkey)
member_is(sid, member)
index_add(tp, T, sid, rec, expire)
ctr_session_added(tp, level, ds, sealed_d)

local D = sealed_source(T, rec)
emit_live(T, 'created', sid, rec, D)
-- The caller knows the new record from what it sent and the call's NOW
-- (createdRecord in record-codec.ts): of the record only the sealed data-source
-- name follows (sealed_source may have read it), then the evicted records.
-- Mostly nothing was evicted or expired on the way: the reply is made whole, header first (with_header).
if not evicted then
  if not LAZY then return { c, '0', 'ok', '1', D }, true end
  return { 'ok', '1', D }
end
return append({ 'ok', '1', D }, evicted)
`;
