// Lua source of the prelude script. String.raw keeps Lua escapes as written.
import { KEY_LAYOUT_LUA } from "../keys.js";
import { indexesLua } from "./indexes.js";

export const preludeLua = String.raw`
-- Shared prelude of the function library (scripts.ts), so each behaviour (key
-- names, expiry, counters, index moves, archiving) is written once.
--
-- ARGV header common to every script:
--   ARGV[1] key prefix P (e.g. "sd:")
--   ARGV[2] encoded tenant T ("" for tenant-less scripts such as expire_due)
--   ARGV[3] expiryGraceMs, ARGV[4] archiveRetentionMs, ARGV[5] maxDataKeys
--   ARGV[6] eventRetentionCount, ARGV[7] eventRetentionMs
--   ARGV[8] guard user ("" for none; then its aliases, each after a newline),
--   ARGV[9] guard level (SessionGuard in store.ts)
--   ARGV[10] "1" when Redis refused a write of this call for lack of memory
--           (a retry under pressure, see end_session), else "0"
--   ARGV[11] partition tag Q ("" with one partition, see keys.ts),
--   ARGV[12] partition index, ARGV[13] partition count
-- KEYS[1] is the partition's generation key: it names the hash slot every key
-- of the script lives in, so that a Redis Cluster routes the script there.
-- Operation arguments start at ARGV[OP] (OP = 14).
--
-- Every script returns an array whose first element is a status string:
-- "ok", or a SessionErrorKind ("not_found", "ended", ...). Records travel as
-- 15 strings: T, sid, user, dataSource, level, status, create, expire,
-- lastAccess, end, metadata, version, sealed user, sealed data source,
-- metadata tag (the last three "" without encryption; see record-codec.ts);
-- a get answers a live session in a shorter form (lua/get.ts).
--
-- Key names are built here rather than passed in KEYS because most of them
-- (user index, data-source index, request id) come from the stored record and
-- cannot be known before the script runs. They all carry the partition's hash
-- tag (keys.ts), so they share the slot of KEYS[1].

-- The library (scripts.ts) is loaded once; the state of one call lives in
-- the locals below, which begin() sets from the call's arguments before each
-- call runs (Redis runs one call at a time).
local ARGV
-- redis.call and redis.pcall as upvalues: a global's lookup goes through the
-- library's protected environment (a metatable) at every call. Bound when a
-- call first runs (FUNCTION LOAD runs the library's code without them: bind_redis).
local rcall, rpcall
local function bind_redis()
  rcall, rpcall = redis.call, redis.pcall
end
local P, GRACE, RETENTION, MAX_DATA_KEYS, EV_MAXLEN, EV_MAXAGE, GUARD_LEVEL, PRESSURE, PART, PARTS
local OP = 14
local RECORD_WIDTH = 15

-- The guard's user and its aliases (stored forms under earlier keys): GUARD_NAMES[u] is true for each.
local GUARD_USER, GUARD_NAMES

-- Integer to decimal string without Lua's "%.14g" exponent formatting. A call
-- formats the same few numbers (NOW, an expire time and its grace) many times,
-- and string.format is one of the dearest things a script does: each is made
-- once per call or batch (ISTR, reset by begin or run_batch).
local ISTR
local function istr(n)
  local s = ISTR[n]
  if s then return s end
  s = string.format('%d', n)
  -- NaN cannot be a table key.
  if n == n then ISTR[n] = s end
  return s
end

-- The store's clock: Redis TIME, read once per call (or batch, see begin) so every step of it agrees.
local NOW

-- Key names (keys.ts).
${KEY_LAYOUT_LUA}
-- A reshard moves a partition's keys one by one while scripts keep running,
-- and Redis checks every command of a script against its slot's state: a
-- script refused by a later command would keep its earlier writes. So a script
-- learns first whether the slot is moving, from two keys that never exist: a
-- migrating node refuses a command on any key it lacks, an importing node
-- (reached by ASK) one on several keys it lacks. A moving slot takes no write
-- (before_writes refuses with Redis's own error before the first one, and the
-- store sends the script again: call-outcome.ts); reads go on only on the
-- migrating node, where Redis refuses each key already moved, not on the
-- importing one, where a key not yet moved would read as missing.
local function refuse_moving_slot() rcall('EXISTS', K_NEVER_1, K_NEVER_2) end
local SLOT_MOVING
local function probe_slot()
  SLOT_MOVING = Q ~= '' and type(rpcall('EXISTS', K_NEVER_1, K_NEVER_2)) == 'table'
  if SLOT_MOVING and type(rpcall('EXISTS', K_NEVER_1)) ~= 'table' then refuse_moving_slot() end
end
local function before_writes()
  if SLOT_MOVING then refuse_moving_slot() end
end
-- Archives of sessions this run expired lazily (load_session), flattened
-- records (nil: none); scripts.ts returns them in the reply header so the
-- process that expired them can audit them.
local LAZY

-- The generation (a decimal string), made when missing: NOW - 1 for a new log,
-- so every event of it is later; '0' for a log written before generations
-- existed, so its cursors stay valid. Best effort under a full Redis (pcall).
-- Read once per call or batch (start_batch): only this function writes K_GEN.
local GEN
local function generation()
  if GEN then return GEN end
  GEN = rcall('GET', K_GEN)
  if not GEN then
    GEN = '0'
    if rcall('EXISTS', K_EV) == 0 then GEN = istr(NOW - 1) end
    rpcall('SET', K_GEN, GEN)
  end
  return GEN
end

-- Appends the elements of 'src' to 'dst'.
local function append(dst, src)
  for i = 1, #src do dst[#dst + 1] = src[i] end
  return dst
end

-- HGETALL as a table, or nil when the key does not exist.
local function load_hash(key)
  local flat = rcall('HGETALL', key)
  if #flat == 0 then return nil end
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h
end

-- Records keep the access level as its first letter (r, w, a: 3-4 B less per
-- record); records of earlier versions spell it out. load_record gives the full name.
local LEVEL_NAMES = { r = 'read', w = 'write', a = 'admin' }
local function level_code(level)
  return string.sub(level, 1, 1)
end
-- level_code of each level, for a create: a table lookup costs less than the call.
local LEVEL_CODES = { read = 'r', write = 'w', admin = 'a' }

-- The live record of a session as a table (level spelled out), or nil.
local function load_record(tp, sid)
  local rec = load_hash(k_rec(tp, sid))
  if rec and LEVEL_NAMES[rec.l] then rec.l = LEVEL_NAMES[rec.l] end
  return rec
end

-- A cap argument (create) as a number: '0' (none, the common case) skips tonumber, which is dear.
local function cap_arg(s)
  if s == '0' then return 0 end
  return tonumber(s) or 0
end

-- The record a create makes, as a table, filled in place for each create
-- (create.ts): no step keeps it past its create. Made with every field's slot.
local CREATE_REC = { u = false, d = false, l = false, c = false, e = false, a = false, m = false, v = false, D = false, U = false, mt = false, r = false, rc = false }

-- A create's HSET arguments, filled in place for each create (create.ts;
-- HSET reads only the first nf): a table made per call costs its
-- allocation and the garbage collector's work. Odd places hold the field
-- names u d l c e a m v, then room for U, mt, r and rc.
local CREATE_FIELDS = { 'u', false, 'd', false, 'l', false, 'c', false, 'e', false, 'a', false, 'm', false, 'v', '1', false, false, false, false, false, false, false, false }

-- Sets the key's expiry to 'at' unless it already lives longer (index keys
-- outlive their longest member by the grace, and never live forever). GT
-- treats a key without expiry as living forever, so NX covers that case (a
-- key just made); the common case (a later expiry) is one call.
local function expire_at_least(key, at)
  local a = istr(at)
  return rcall('PEXPIREAT', key, a, 'GT') == 1 or rcall('PEXPIREAT', key, a, 'NX') == 1
end

-- Sealed data-source names read in this call or batch, by tenant and data
-- source (nil: none yet). Only ctr_gauge, ctr_session_added and name_source
-- write the names: they drop what was read.
local SOURCE_NAMES

-- The counters' values ctr_session_added read or wrote in this call or batch
-- (start_batch), by key: field -> number (a missing field 0), or for an n:
-- field whether it exists. Every other counter write forgets them all.
local CTR_SEEN
-- True in a batch (start_batch), which leaves some writes to its end
-- (finish_batch); a call alone makes them at once.
local DEFERRED
-- In a batch, the fields of CTR_SEEN that ctr_session_added changed and has
-- not written yet, by key (field -> true; nil: none): the creates of a batch write the
-- counters once, at its end (finish_batch) or before anything else reads or
-- writes them (flush_counters, which ctr_get, ctr_incr, ctr_gauge,
-- name_source and source_fits call first).
local CTR_DIRTY
local function flush_counters()
  if not CTR_DIRTY then return end
  for key, fields in pairs(CTR_DIRTY) do
    local c, args = CTR_SEEN[key], {}
    for f in pairs(fields) do
      args[#args + 1] = f
      args[#args + 1] = c[f]
    end
    rcall('HSET', key, unpack(args))
  end
  CTR_DIRTY = nil
end
local function forget_counters()
  flush_counters()
  CTR_SEEN = nil
end
-- A counter's stored value (nil when missing).
local function ctr_get(tp, field)
  flush_counters()
  return rcall('HGET', k_ctr(tp), field)
end

-- Monotonic counter. Numbers go to redis.call as strings: Redis formats a Lua
-- number argument with snprintf, istr formats each number once per call.
local function ctr_incr(tp, field, delta)
  forget_counters()
  rcall('HINCRBY', k_ctr(tp), field, istr(delta))
end

-- Gauge of live sessions; the field disappears at 0 so maps list only live values.
-- 'nds' counts the live data sources (the s:<dataSource> fields), so the
-- per-tenant cap is one HGET, not a walk over the fields.
-- With encryption on, 'n:<dataSource>' keeps the sealed name of each live data
-- source (set by name_source), so GetSessionMetrics can name them; it goes with the gauge.
local function ctr_gauge(tp, field, delta)
  forget_counters()
  local v = rcall('HINCRBY', k_ctr(tp), field, istr(delta))
  local source = string.sub(field, 1, 2) == 's:'
  if source and v == delta and delta > 0 then rcall('HINCRBY', k_ctr(tp), 'nds', 1) end
  if v <= 0 then
    rcall('HDEL', k_ctr(tp), field)
    if source then
      rcall('HDEL', k_ctr(tp), 'n:' .. string.sub(field, 3))
      SOURCE_NAMES = nil
    end
    if source and v - delta > 0 and rcall('HINCRBY', k_ctr(tp), 'nds', -1) <= 0 then rcall('HDEL', k_ctr(tp), 'nds') end
  end
end

-- A new live session's counters in two calls rather than one per field: the
-- total, the 'active', level and data-source gauges (ctr_gauge's 'nds' when
-- the data source becomes live) and the source's sealed name D (name_source).
-- Lua's arithmetic reads the stored integers (exact below 2^53) and the new
-- values go to Redis as numbers, which it formats as integers: each is used once.
-- The later creates of a batch know the values (CTR_SEEN) and leave the
-- write to the batch's end (CTR_DIRTY): no call. Key and field names are made
-- once per call or batch (CTR_NAMES, by tenant prefix and data source).
local CTR_FIELDS = { 'total', 'active' }
local LEVEL_FIELDS = { read = 'l:read', write = 'l:write', admin = 'l:admin' }
local CTR_NAMES
local function ctr_session_added(tp, level, ds, D)
  -- Made on first use: most calls never add a session.
  if not CTR_SEEN then CTR_SEEN = {} end
  if not CTR_NAMES then CTR_NAMES = {} end
  -- { counters key, { data source -> { s: field, n: field } } }
  local names = CTR_NAMES[tp]
  if not names then
    names = { k_ctr(tp), {} }
    CTR_NAMES[tp] = names
  end
  local f = names[2][ds]
  if not f then
    f = { 's:' .. ds, 'n:' .. ds }
    names[2][ds] = f
  end
  local key, fl, fs, fn = names[1], LEVEL_FIELDS[level] or 'l:' .. level, f[1], f[2]
  local c = CTR_SEEN[key]
  if not (c and c[fl] and c[fs] and c[fn] ~= nil) then
    local v = rcall('HMGET', key, 'total', 'active', fl, fs, fn)
    c = c or {}
    -- What c holds is newer than what is stored (CTR_DIRTY).
    CTR_FIELDS[3], CTR_FIELDS[4] = fl, fs
    for i = 1, 4 do
      if c[CTR_FIELDS[i]] == nil then c[CTR_FIELDS[i]] = (v[i] or 0) + 0 end
    end
    if c[fn] == nil then c[fn] = v[5] ~= false end
    CTR_SEEN[key] = c
  end
  local named = D ~= '' and not c[fn]
  if named and DEFERRED then rcall('HSET', key, fn, D) end
  c.total, c.active, c[fl], c[fs] = c.total + 1, c.active + 1, c[fl] + 1, c[fs] + 1
  if DEFERRED then
    local all = CTR_DIRTY or {}
    CTR_DIRTY = all
    local dirty = all[key]
    if not dirty then
      dirty = {}
      all[key] = dirty
    end
    dirty.total, dirty.active, dirty[fl], dirty[fs] = true, true, true, true
  elseif named then
    rcall('HSET', key, 'total', c.total, 'active', c.active, fl, c[fl], fs, c[fs], fn, D)
  else
    rcall('HSET', key, 'total', c.total, 'active', c.active, fl, c[fl], fs, c[fs])
  end
  if named then
    c[fn] = true
    SOURCE_NAMES = nil
  end
  if c[fs] == 1 then rcall('HINCRBY', key, 'nds', 1) end
end

-- The counters of tp as ctr_session_added saw and changed them in this call
-- or batch (nil: not seen). Every other counter write forgets them, so they
-- are the stored values with the batch's deferred writes applied: the caps of
-- a batch's later creates are read here, with no call and no early flush.
local function ctr_seen(tp)
  local names = CTR_SEEN and CTR_NAMES and CTR_NAMES[tp]
  return names and CTR_SEEN[names[1]], names
end

-- Live sessions of the tenant (its 'active' gauge).
local function ctr_active(tp)
  local c = ctr_seen(tp)
  if c and c.active then return c.active end
  return tonumber(ctr_get(tp, 'active')) or 0
end

-- Keeps the sealed name D ("" without encryption: nothing kept) of the live data
-- source ds; the first one stays while the source is live (readers cache it).
local function name_source(tp, ds, D)
  if D ~= '' then
    forget_counters()
    rcall('HSETNX', k_ctr(tp), 'n:' .. ds, D)
    SOURCE_NAMES = nil
  end
end

-- Whether the tenant may gain the live data source 'ds' under the cap (0: none).
-- max_sources: 0 no cap; negative: no new data source fits (several partitions, see RedisStore.tenantCapsLeft).
local function source_fits(tp, ds, max_sources)
  if max_sources == 0 then return true end
  -- A data source with sessions counted in this call or batch is live.
  local c, names = ctr_seen(tp)
  local f = c and names[2][ds]
  if f and (c[f[1]] or 0) > 0 then return true end
  flush_counters()
  if rcall('HEXISTS', k_ctr(tp), 's:' .. ds) == 1 then return true end
  return (tonumber(ctr_get(tp, 'nds')) or 0) < max_sources
end

-- Every key of the session (record, data, request id) expires at expire + grace,
-- so the state is still readable for archiving when the scheduler is late. No
-- key expires at the expire time itself: the due queue is the only clock
-- (expire_due), so a session costs no key for its expiry.
-- 'fresh': the session was just created, so it has no data key yet (set_data
-- gives the key its expiry when it makes it).
-- 'e': rec.e as a number when the caller has it (tonumber is dear).
-- 'key': the record's key when the caller has it.
local function set_session_expiry(tp, sid, rec, fresh, e, key)
  e = (e or tonumber(rec.e)) + GRACE
  local at = ISTR[e] or istr(e)
  rcall('PEXPIREAT', key or k_rec(tp, sid), at)
  if not fresh then rcall('PEXPIREAT', k_data(tp, sid), at) end
  if rec.r then rcall('PEXPIREAT', k_req(tp, rec.r), at) end
end

-- The session indexes (lua/indexes.ts).
${indexesLua}

-- The sealed name of record h's data source: the record's own (records of
-- earlier versions carry one) or the one the counters keep while the source
-- is live (name_source; '' without encryption). Records do not repeat it,
-- which saves about 60 B per session.
-- sealed_source_of: from the record's fields D (its own sealed name), U, d (nil or false when missing).
local function sealed_source_of(T, D, U, d)
  if D then return D end
  -- Without a sealed user the record was written with encryption off: it has no sealed names.
  if not U then return '' end
  local k = T .. '\n' .. d
  local names = SOURCE_NAMES or {}
  SOURCE_NAMES = names
  local v = names[k]
  if v == nil then
    v = rcall('HGET', k_ctr(tenant_prefix(T)), 'n:' .. d) or ''
    names[k] = v
  end
  return v
end
local function sealed_source(T, h)
  return sealed_source_of(T, h.D, h.U, h.d)
end

local function encode(T, sid, h, status, end_time)
  return { T, sid, h.u, h.d, h.l, status, h.c, h.e, h.a, end_time, h.m, h.v, h.U or '', sealed_source(T, h), h.mt or '' }
end

local function encode_live(T, sid, rec)
  return encode(T, sid, rec, 'active', '0')
end

local function encode_archive(T, sid, arch)
  return encode(T, sid, arch, arch.s, arch.t)
end

-- What an event logs for data key 'key' holding 'stored': with encryption on,
-- values are '<sealed key name> <sealed value>' and the sealed name is logged
-- (mirror of loggedKeyOf in store.ts).
local function logged_key(key, stored)
  local name = string.match(stored, '^(e[12]:[^ ]+) ')
  return name or key
end

-- Archives are one MessagePack string, not a hash: a hash whose metadata is
-- longer than hash-max-listpack-value (64 bytes, any encrypted value) becomes
-- a real hash table of ten entries, which costs several times its content.
-- Numbers travel as MessagePack integers. 'bare' (memory pressure) drops the
-- metadata (an empty object, which needs no key to read) and its tag. The
-- sealed user, data source and metadata tag follow ('' without encryption).
local function write_archive(key, rec, v, status, end_time, bare)
  local m, mt = rec.m, rec.mt or ''
  if bare then m, mt = '{}', '' end
  rcall('SET', key, cmsgpack.pack(rec.u, rec.d, rec.l, tonumber(rec.c), tonumber(rec.e),
    tonumber(rec.a), m, tonumber(v), status, tonumber(end_time), rec.U or '', rec.D or '', mt))
end

-- The archive as a table with the record's field names, or nil. Archives
-- written as hashes by earlier versions are read as such until they expire.
local function load_archive(key)
  local packed = rpcall('GET', key)
  if type(packed) == 'table' and packed.err then return load_hash(key) end
  if not packed then return nil end
  local u, d, l, c, e, a, m, v, s, t, U, D, mt = cmsgpack.unpack(packed)
  return { u = u, d = d, l = l, c = istr(c), e = istr(e), a = istr(a), m = m, v = istr(v), s = s, t = istr(t), U = U, D = D, mt = mt }
end

-- The one place per operation where a lifecycle event is recorded, inside the
-- same atomic step as the write: an XADD to the event log K_EV, whose id is
-- the watch cursor. 'kind' is created, updated, extended, closed, expired or
-- data_changed; 'rec' is the encoded record after the change; 'keys' lists
-- changed data keys (never values). Every entry has the same fields in the same
-- order, so the stream stores the field names once per node, not per entry.
-- Status is not stored (it follows from the kind). Count retention trims here
-- (whole nodes, '~'); time retention trims in expire_due.
--   k kind, T tenant, i session id, u user, d data source, l level, c create,
--   e expire, a last access, t end, m metadata, v version, x data keys (JSON array or ''; encryption on: their sealed names),
--   g the log's generation (the event reader ends every watch when it changes),
--   U sealed user, D sealed data source ('' without encryption). Never the
--   record's metadata tag: a ciphertext from the log cannot pass for the record's.

-- With several partitions the id is chosen here: (ms, seq) after the log's
-- last id with seq = PART mod PARTS, so ids are unique across partitions and
-- one id is a complete watch cursor (keys.ts).
local function next_event_id()
  if Q == '' then return '*' end
  local last = rcall('GET', K_EV_LAST)
  if not last and rcall('EXISTS', K_EV) == 1 then
    local info = rcall('XINFO', 'STREAM', K_EV)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
  end
  local ms, seq = NOW, PART
  if last then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    lms, lseq = tonumber(lms), tonumber(lseq)
    if lms >= NOW then
      ms = lms
      seq = lseq + 1
      seq = seq + (PART - seq) % PARTS
    end
  end
  return istr(ms) .. '-' .. istr(seq)
end

-- In a batch, the newest event id of each tenant the batch logged for, by
-- encoded tenant: run_batch writes each once at its end (finish_batch;
-- only log_position reads them, never in a batch; nil: none yet). A call alone writes it at once.
local EV_LAST_PENDING
-- In a batch, whether it logged an event (the log is trimmed by count once, at its end: finish_batch).
local EV_TRIM

-- Packed (event-codec.ts): the values in one field joined by the unit
-- separator US, which no value holds. Every process's reader reads every entry,
-- and a reply string costs the client a decode each: one instead of fifteen.
-- The values are joined by one concatenation (one string made, no table).
local US = '\31'
local function log_entry(T, packed)
  local id
  if DEFERRED then
    -- A batch trims once, at its end (finish_batch): '~' trims whole nodes, so the log ends as long.
    id = rcall('XADD', K_EV, Q == '' and '*' or next_event_id(), 'r', packed, 'g', GEN or generation())
    EV_TRIM = true
  else
    id = rcall('XADD', K_EV, 'MAXLEN', '~', EV_MAXLEN, next_event_id(), 'r', packed, 'g', generation())
  end
  if DEFERRED then
    if not EV_LAST_PENDING then EV_LAST_PENDING = {} end
    EV_LAST_PENDING[T] = id
  else
    rcall('SET', k_ev_last(tenant_prefix(T)), id)
  end
  if Q ~= '' then rcall('SET', K_EV_LAST, id) end
end

local function emit(T, kind, rec, keys)
  local x = ''
  if keys and #keys > 0 then
    table.sort(keys)
    x = cjson.encode(keys)
  end
  log_entry(rec[1], kind .. US .. rec[1] .. US .. rec[2] .. US .. rec[3] .. US .. rec[4] .. US .. rec[5] .. US .. rec[7] .. US .. rec[8]
    .. US .. rec[9] .. US .. rec[10] .. US .. rec[11] .. US .. rec[12] .. US .. x .. US .. rec[13] .. US .. rec[14])
end

-- emit(T, kind, encode_live(T, sid, h), nil) without the encoded copy; D: sealed_source(T, h).
local function emit_live(T, kind, sid, h, D)
  log_entry(T, kind .. US .. T .. US .. sid .. US .. h.u .. US .. h.d .. US .. h.l .. US .. h.c .. US .. h.e
    .. US .. h.a .. US .. '0' .. US .. h.m .. US .. h.v .. US .. US .. (h.U or '') .. US .. D)
end

-- Archives the final state (version + 1) and removes the session, its data, its
-- request id and its index entries; updates counters. Returns the encoded archive.
-- Normally the archive is written first, so a Redis out of memory refuses the
-- whole call before anything changed. Under PRESSURE (the retry of such a
-- call) the keys are deleted first: that frees memory, and once a script has
-- written Redis lets it finish its writes, so the session always ends; the
-- archive then keeps no metadata.
local function end_session(tp, T, sid, rec, status, end_time)
  before_writes()
  local v = tonumber(rec.v) + 1
  local arch_key = k_arch(tp, sid)
  -- Before the gauge below can drop the counters' copy of the name.
  rec.D = sealed_source(T, rec)
  if PRESSURE then rcall('DEL', k_rec(tp, sid), k_data(tp, sid)) end
  write_archive(arch_key, rec, istr(v), status, istr(end_time), PRESSURE)
  rcall('PEXPIREAT', arch_key, istr(end_time + RETENTION))
  if not PRESSURE then rcall('DEL', k_rec(tp, sid), k_data(tp, sid)) end
  if rec.r and rcall('GET', k_req(tp, rec.r)) == sid then
    rcall('DEL', k_req(tp, rec.r))
  end
  index_remove(tp, sid, rec)
  ctr_gauge(tp, 'active', -1)
  ctr_incr(tp, status, 1)
  ctr_gauge(tp, 'l:' .. rec.l, -1)
  ctr_gauge(tp, 's:' .. rec.d, -1)
  ctr_incr(tp, 'dsum', end_time - tonumber(rec.c))
  local out = encode(T, sid, rec, status, istr(end_time))
  out[12] = istr(v)
  emit(T, status, out, nil)
  return out
end

-- Loads a session, first archiving it as expired when its expire time has passed
-- ("expire if due"). Returns (live record table, nil), (nil, encoded archive) for
-- an ended session, or (nil, nil) for an unknown one. With a guard, a session of
-- another user (live or ended) is an unknown one: the same reply after the same
-- kind of work, so a caller cannot tell it from a missing session.
local function load_session(tp, T, sid)
  local rec = load_record(tp, sid)
  if rec then
    local e = tonumber(rec.e)
    if e <= NOW then
      local arch = end_session(tp, T, sid, rec, 'expired', e)
      LAZY = append(LAZY or {}, arch)
      if GUARD_USER ~= '' and not GUARD_NAMES[arch[3]] then return nil, nil end
      return nil, arch
    end
    if GUARD_USER ~= '' and not GUARD_NAMES[rec.u] then return nil, nil end
    return rec, nil
  end
  local arch = load_archive(k_arch(tp, sid))
  if arch then
    if GUARD_USER ~= '' and not GUARD_NAMES[arch.u] then return nil, nil end
    return nil, encode_archive(T, sid, arch)
  end
  return nil, nil
end

local LEVEL_RANK = { read = 1, write = 2, admin = 3 }

-- True when a guard is set and the session's level is below the guard's.
local function guard_denies(level)
  return GUARD_USER ~= '' and (LEVEL_RANK[level] or 0) < (LEVEL_RANK[GUARD_LEVEL] or 4)
end

local function can_write(level)
  return level == 'write' or level == 'admin'
end

-- Bumps the version (and optionally the access time) of a live record in place.
local function bump_version(tp, sid, rec, touch)
  rec.v = istr(tonumber(rec.v) + 1)
  if touch then
    rec.a = istr(NOW)
    rcall('HSET', k_rec(tp, sid), 'v', rec.v, 'a', rec.a)
  else
    rcall('HSET', k_rec(tp, sid), 'v', rec.v)
  end
end

-- Records the access time, best effort: when Redis refuses the write (out of
-- memory) the read goes on with the previous access time.
-- touched: of the record at 'key' whose access time is 'a', the access time after the touch.
local function touched(key, a)
  -- Under PRESSURE the call runs flagged allow-oom (scripts.ts): it writes nothing it can do without.
  local now = istr(NOW)
  if PRESSURE or a == now then return a end
  local done = rpcall('HSET', key, 'a', now)
  if type(done) ~= 'table' or not done.err then return now end
  return a
end
local function touch(tp, sid, rec)
  rec.a = touched(k_rec(tp, sid), rec.a)
end

-- The header's numbers, by ARGV index: {string, number} as last converted.
-- They change only with the configuration, and tonumber (strtod) is dear.
local HEADER_NUMBERS = {}
local function header_number(i)
  local s, known = ARGV[i], HEADER_NUMBERS[i]
  if known and known[1] == s then return known[2] end
  local n = tonumber(s)
  HEADER_NUMBERS[i] = { s, n }
  return n
end

-- The guard's names as last parsed, by ARGV[8]: a batch's calls mostly share one guard.
local GUARD_ARG, GUARD_ARG_USER, GUARD_ARG_NAMES = '', '', {}
local function guard_names(arg)
  if arg ~= GUARD_ARG then
    local user, names = '', {}
    for name in string.gmatch(arg, '[^\n]+') do
      if user == '' then user = name end
      names[name] = true
    end
    GUARD_ARG, GUARD_ARG_USER, GUARD_ARG_NAMES = arg, user, names
  end
  return GUARD_ARG_USER, GUARD_ARG_NAMES
end

-- Redis TIME in ms.
local function clock()
  if not rcall then bind_redis() end
  local t = rcall('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Resets what a call alone, or a batch (run_batch) for all its calls, learns
-- as it runs: number strings, sealed names, the generation, counters, index facts (forget_indexes).
-- 'deferred': a batch (run_batch), which leaves the counters and the
-- tenants' newest event ids to finish_batch; a call alone writes them at once.
local function start_batch(deferred)
  ISTR, SOURCE_NAMES, GEN, CTR_SEEN, CTR_NAMES = {}, nil, nil, nil, nil
  DEFERRED, CTR_DIRTY, EV_LAST_PENDING, EV_TRIM = deferred, nil, nil, false
  forget_indexes()
  forget_legacy()
end
local function finish_batch()
  flush_counters()
  if EV_LAST_PENDING then
    for T, id in pairs(EV_LAST_PENDING) do rcall('SET', k_ev_last(tenant_prefix(T)), id) end
  end
  if EV_TRIM then rcall('XTRIM', K_EV, 'MAXLEN', '~', EV_MAXLEN) end
  DEFERRED, EV_LAST_PENDING, EV_TRIM = false, nil, false
end

-- Sets the state of one call from its arguments (see the ARGV header above);
-- a moving slot refuses here, before the call's body runs. 'now': the clock of a batch
-- (run_batch), which runs atomically, so its calls share one reading of it,
-- the number strings istr made and the sealed names read; nil for a call of
-- its own, which reads the clock. 'shared_set': a batch's later calls, whose
-- shared arguments (scripts.ts) the first call of the batch has set.
local function begin(args, now, shared_set)
  ARGV = args
  if not rcall then bind_redis() end
  if not now then
    start_batch()
    now = clock()
  end
  if not shared_set then
    P = ARGV[1]
    GRACE = header_number(3)
    RETENTION = header_number(4)
    MAX_DATA_KEYS = header_number(5)
    EV_MAXLEN = ARGV[6]
    EV_MAXAGE = header_number(7)
    PRESSURE = ARGV[10] == '1'
    PART = header_number(12)
    PARTS = header_number(13)
    key_names()
  end
  MEMBER_OF = nil
  GUARD_LEVEL = ARGV[9]
  if ARGV[8] == GUARD_ARG then GUARD_USER, GUARD_NAMES = GUARD_ARG_USER, GUARD_ARG_NAMES else GUARD_USER, GUARD_NAMES = guard_names(ARGV[8]) end
  NOW = now
  if Q == '' then SLOT_MOVING = false else probe_slot() end
  LAZY = nil
end
`;
