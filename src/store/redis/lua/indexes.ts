// Lua source of the session indexes, part of the prelude (needs istr, NOW,
// GRACE, expire_at_least and the key names). String.raw keeps Lua escapes as written.
//
// Memory decides the shape (keys.ts): a sorted set of up to 128 short members
// is a listpack (about 28 B per member here), a larger one a skiplist and a
// dict (about 140 B per member). So:
// - members are the 16 bytes of the session id, not its 36-character text
//   (byte order is the text's order, so ties still sort by session id);
// - the data-source and tenant-wide indexes, which hold every session, are
//   bucketed by expire time: a directory (a sorted set, member and score the
//   bucket's lower bound) and buckets of at most BUCKET_MAX members each. Every
//   member of a bucket has lower bound <= score < the next bucket's lower
//   bound, so reading in (score, id) order walks the directory from the bucket
//   of the cursor: O(page) members and O(page / bucket fill + 1) buckets.
//   A bucket that passes BUCKET_MAX splits (O(bucket)); an empty one leaves
//   the directory. Only members of one expire time (ms) cannot be split: such
//   a bucket grows past BUCKET_MAX (past 128 a skiplist: more memory, same order). The user index is one sorted set (a user's sessions are few).
// Indexes of the earlier layout (k_user, k_src, k_all: text members, one
// sorted set each) are still read, merged in order, and members leave them
// as their sessions end or move; nothing is added to them.

/**
 * Members a bucket holds before it splits. Below zset-max-listpack-entries (128
 * by default) so buckets stay listpacks. A ZADD to a listpack walks it twice
 * (to find the member, then its place), the dearest step of a create: half
 * the listpack limit costs a few bytes per session in bucket keys and takes
 * about a quarter off a create's Redis instructions. Readers do not depend on
 * it (buckets of any size read the same).
 */
export const BUCKET_MAX = 60;

export const indexesLua = String.raw`
local BUCKET_MAX = ${BUCKET_MAX}
-- The value of each lowercase hex digit, by byte (no other byte has one).
local HEX_VALUE = {}
for i = 0, 9 do HEX_VALUE[48 + i] = i end
for i = 0, 5 do HEX_VALUE[97 + i] = 10 + i end
-- Where each of the 16 bytes of a UUID's text (8-4-4-4-12 hex digits) starts.
local UUID_BYTES = { 1, 3, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 29, 31, 33, 35 }
local MEMBER_BYTES = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }

-- Index member of a session id: a lowercase UUID as its 16 bytes, any other id as it is
-- (RedisStore.create takes UUIDs only, so no other member is 16 bytes long).
-- A call asks for the same session's member several times (each index): the
-- last answer is kept for the call (reset by begin). The text is read with one
-- string.byte and table lookups: a pattern match and string.sub/tonumber per
-- part cost several times that.
local MEMBER_OF, MEMBER
local function sid_member(sid)
  if sid == MEMBER_OF then return MEMBER end
  MEMBER_OF, MEMBER = sid, sid
  if #sid ~= 36 then return sid end
  local t = { string.byte(sid, 1, 36) }
  if t[9] ~= 45 or t[14] ~= 45 or t[19] ~= 45 or t[24] ~= 45 then return sid end
  local x, out = HEX_VALUE, MEMBER_BYTES
  for k = 1, 16 do
    local i = UUID_BYTES[k]
    local hi, lo = x[t[i]], x[t[i + 1]]
    if not hi or not lo then return sid end
    out[k] = hi * 16 + lo
  end
  MEMBER = string.char(unpack(out))
  return MEMBER
end

-- Tells sid_member the member of sid, which the caller made (create, extend,
-- close: RedisStore sends it, as indexMember makes it; "" or nil: none sent).
local function member_is(sid, m)
  if m and m ~= '' then MEMBER_OF, MEMBER = sid, m end
end

-- Two hex digits per byte value, made on first use (not every script reads members).
local HEX
local function member_sid(m)
  if #m ~= 16 then return m end
  if not HEX then
    HEX = {}
    for i = 0, 255 do HEX[i] = string.format('%02x', i) end
  end
  local x = HEX
  local a, b, c, d, e, f, g, h, i, j, k, l, n, o, p, q = string.byte(m, 1, 16)
  return x[a] .. x[b] .. x[c] .. x[d] .. '-' .. x[e] .. x[f] .. '-' .. x[g] .. x[h] .. '-' .. x[i] .. x[j] .. '-' .. x[k] .. x[l] .. x[n] .. x[o] .. x[p] .. x[q]
end

-- What a call or batch (reset by forget_indexes, from start_batch)
-- already knows of the index keys, so that the creates of a batch, which
-- mostly meet the same keys with the same expire time, skip the calls that
-- would tell them again. A batch runs atomically and Redis does not expire
-- keys while a script runs, so only the scripts' own writes can make an entry
-- wrong: every write that could is next to the line that forgets it.
-- INDEX_EXPIRY[key]: an expiry (ms) the key is known to have at least.
-- DIR_SPAN[dir]: { lb, lo, hi }: bucket_of answered lb (lower bound lo) for
--   hi, so no bucket starts in (lo, hi]: lb is the bucket of every score there.
-- BUCKET_SIZE[key]: the bucket's member count.
-- DUE_AT[T][ds]: a score the due-queue member of (T, ds) is known to have at most.
-- IX_MADE[id]: index descriptors (src_index, all_index).
-- ONE_SCORE[key]: the one score every member of the bucket has (bucket_split
--   found it cannot split): adding that score again leaves it so.
-- DUE_HEAD: the due queue's lowest score (math.huge: empty) once read (due_lower).
local INDEX_EXPIRY, DIR_SPAN, BUCKET_SIZE, DUE_AT, IX_MADE, ONE_SCORE, DUE_HEAD
-- Made when a call or batch first needs them (index_facts): most gets never do.
local function forget_indexes()
  INDEX_EXPIRY, DIR_SPAN, BUCKET_SIZE, DUE_AT, IX_MADE, ONE_SCORE, DUE_HEAD = nil, nil, nil, nil, nil, nil, nil
end
local function index_facts()
  if not IX_MADE then INDEX_EXPIRY, DIR_SPAN, BUCKET_SIZE, DUE_AT, IX_MADE, ONE_SCORE = {}, {}, {}, {}, {}, {} end
end

-- A bucketed index: its directory key and a function from lower bound to
-- bucket key. Made once per call or batch and index (IX_MADE, reset by
-- forget_indexes), its key names once per bucket: the creates of a batch meet the same few.
local function bucketed_index(id, dir, bucket_key)
  local names = {}
  local ix = { dir = dir, names = names, bucket = function(lb)
    local key = names[lb]
    if not key then
      key = bucket_key(lb)
      names[lb] = key
    end
    return key
  end }
  IX_MADE[id] = ix
  return ix
end
local function src_index(tp, ds)
  if not IX_MADE then index_facts() end
  local id = tp .. '\n' .. ds
  return IX_MADE[id] or bucketed_index(id, k_src_dir(tp, ds), function(lb) return k_src_bucket(tp, ds, lb) end)
end
local function all_index(tp)
  if not IX_MADE then index_facts() end
  return IX_MADE[tp] or bucketed_index(tp, k_all_dir(tp), function(lb) return k_all_bucket(tp, lb) end)
end

-- expire_at_least for an index key. Index keys are written only by the index
-- functions here, and are deleted only when ZREM empties them: the ZREMs
-- forget the key (a key made again has no expiry yet).
local function index_expire_at_least(key, at)
  if not IX_MADE then index_facts() end
  local known = INDEX_EXPIRY[key]
  if known and known >= at then return false end
  local changed = expire_at_least(key, at)
  INDEX_EXPIRY[key] = at
  return changed
end

-- Lower bound of the bucket that holds score e (nil: e is below every bucket, or none exists).
local function bucket_of(ix, e)
  if not IX_MADE then index_facts() end
  local span = DIR_SPAN[ix.dir]
  if span and span[2] <= e and e <= span[3] then return span[1] end
  local lb = rcall('ZRANGE', ix.dir, istr(e), '-inf', 'BYSCORE', 'REV', 'LIMIT', '0', '1')[1]
  if lb then DIR_SPAN[ix.dir] = { lb, tonumber(lb), e } end
  return lb
end

-- ZADD of flat {score, member, ...} in chunks (Lua's unpack limit).
local function zadd_all(key, flat)
  for i = 1, #flat, 400 do
    rcall('ZADD', key, unpack(flat, i, math.min(i + 399, #flat)))
  end
end

-- Moves the upper members of bucket lb to a new bucket whose lower bound is a
-- score of the bucket above its lowest (so both stay non-empty and the bounds
-- distinct). e: the score of the member just added. When e is the bucket's
-- highest (sessions mostly arrive with the latest expire time), only the
-- members of score e move: the bucket left behind keeps all the others (full
-- buckets stay full), and the new one, which the next creates go to, starts
-- nearly empty (a ZADD walks the listpack). Otherwise the upper half moves.
-- Members of one score stay in one bucket: a bucket of one score cannot split.
local function bucket_split(ix, lb, key, n, e)
  if not IX_MADE then index_facts() end
  local low = tonumber(rcall('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
  local s
  if e > low and tonumber(rcall('ZRANGE', key, -1, -1, 'WITHSCORES')[2]) == e then
    s = e
  else
    local at = math.floor(n / 2)
    s = tonumber(rcall('ZRANGE', key, at, at, 'WITHSCORES')[2])
    if s <= low then
      local above = rcall('ZRANGE', key, '(' .. istr(low), '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
      if #above == 0 then
        ONE_SCORE[key] = low
        return
      end
      s = tonumber(above[2])
    end
  end
  local moved = rcall('ZRANGE', key, istr(s), '+inf', 'BYSCORE', 'WITHSCORES')
  local flat = {}
  for i = 1, #moved, 2 do
    flat[#flat + 1] = moved[i + 1]
    flat[#flat + 1] = moved[i]
  end
  local nlb = istr(s)
  local nkey = ix.bucket(nlb)
  zadd_all(nkey, flat)
  rcall('ZREMRANGEBYSCORE', key, nlb, '+inf')
  rcall('ZADD', ix.dir, nlb, nlb)
  DIR_SPAN[ix.dir], BUCKET_SIZE[key], BUCKET_SIZE[nkey] = nil, nil, nil
  ONE_SCORE[key], ONE_SCORE[nkey] = nil, nil
  index_expire_at_least(nkey, tonumber(moved[#moved]) + GRACE)
  index_expire_at_least(ix.dir, tonumber(moved[#moved]) + GRACE)
end

-- Adds member m with score e; lb: the lower bound of e's bucket when known.
-- Every create runs it twice: what a batch knows (the directory's span, the
-- bucket's key name, the number string, the key's expiry) is read here before
-- calling the function that would read it, since a Lua function call costs
-- more than the lookup.
local function bidx_add(ix, m, e, lb)
  if not IX_MADE then index_facts() end
  if not lb then
    local span = DIR_SPAN[ix.dir]
    if span and span[2] <= e and e <= span[3] then lb = span[1] else lb = bucket_of(ix, e) end
  end
  local new_dir = false
  if not lb then
    lb = '0'
    new_dir = rcall('ZADD', ix.dir, 0, lb) == 1
    DIR_SPAN[ix.dir] = nil
  end
  local key = ix.names[lb] or ix.bucket(lb)
  local added = rcall('ZADD', key, ISTR[e] or istr(e), m) == 1
  -- The directory lives as long as its longest-lived bucket: it follows when a bucket's expiry moves.
  local at = e + GRACE
  local known = INDEX_EXPIRY[key]
  if (not (known and known >= at) and index_expire_at_least(key, at)) or new_dir then index_expire_at_least(ix.dir, at) end
  local one = ONE_SCORE[key]
  if one and one ~= e then
    ONE_SCORE[key], one = nil, nil
  end
  if not added then return end
  local n = BUCKET_SIZE[key]
  if n then n = n + 1 else n = rcall('ZCARD', key) end
  BUCKET_SIZE[key] = n
  -- A bucket of one score cannot split: one more of that score needs no look.
  if n > BUCKET_MAX and not one then
    bucket_split(ix, lb, key, n, e)
  end
end

-- Takes member m (score e) out of its bucket; lb: its bucket's lower bound when known.
local function bidx_remove(ix, m, e, lb)
  if not IX_MADE then index_facts() end
  lb = lb or bucket_of(ix, e)
  if not lb then return end
  local key = ix.bucket(lb)
  if rcall('ZREM', key, m) == 1 then
    local n = BUCKET_SIZE[key]
    if n then BUCKET_SIZE[key] = n - 1 end
    if rcall('EXISTS', key) == 0 then
      BUCKET_SIZE[key], INDEX_EXPIRY[key], ONE_SCORE[key] = nil, nil, nil
      -- The directory may go too (its last bucket).
      rcall('ZREM', ix.dir, lb)
      DIR_SPAN[ix.dir], INDEX_EXPIRY[ix.dir] = nil, nil
    end
  end
end

-- Gives member m the score e (it had 'from'): in place when both scores fall
-- in one bucket (no split, no emptied bucket), else out of one and into the other.
local function bidx_move(ix, m, from, e)
  local lb, to = bucket_of(ix, from), bucket_of(ix, e)
  if lb and lb ~= to then bidx_remove(ix, m, from, lb) end
  bidx_add(ix, m, e, to)
end

-- Up to 'need' members {sid, score} of one sorted set with score > NOW and
-- (score, member) after (after_e, after_m) (after_e nil: from the start), in
-- order, appended to 'out'; 'keep(sid)' (optional) filters. Reads about
-- 'need' members (plus ties of the cursor's score before it).
local ZBATCH = 64
local function zset_after(zkey, after_e, after_m, need, out, keep)
  local function consider(m, score)
    local sid = member_sid(m)
    if keep and not keep(sid) then return end
    out[#out + 1] = { sid, score }
  end
  local lo = '(' .. istr(NOW)
  if after_e and after_e > NOW then
    -- Members with the cursor's score, after its member. Where the cursor's
    -- member is still there with that score, its rank starts the read (bounded
    -- by the page); otherwise the ties are read in batches, skipping the smaller ones.
    local start
    local score = rcall('ZSCORE', zkey, after_m)
    if score and tonumber(score) == after_e then start = rcall('ZRANK', zkey, after_m) + 1 end
    if start then
      while #out < need do
        local batch = rcall('ZRANGE', zkey, start, start + ZBATCH - 1, 'WITHSCORES')
        local done = #batch < 2 * ZBATCH
        for i = 1, #batch, 2 do
          if tonumber(batch[i + 1]) ~= after_e then done = true break end
          if #out >= need then return out end
          consider(batch[i], after_e)
        end
        if done then break end
        start = start + ZBATCH
      end
    else
      local offset = 0
      while #out < need do
        local ties = rcall('ZRANGE', zkey, istr(after_e), istr(after_e), 'BYSCORE', 'LIMIT', offset, ZBATCH)
        for i = 1, #ties do
          if #out >= need then return out end
          if ties[i] > after_m then consider(ties[i], after_e) end
        end
        if #ties < ZBATCH then break end
        offset = offset + ZBATCH
      end
    end
    lo = '(' .. istr(after_e)
  end
  local offset = 0
  while #out < need do
    -- What is still needed, at least ZBATCH (a filter may drop some), at most 4 x ZBATCH.
    local count = math.min(math.max(need - #out, ZBATCH), 4 * ZBATCH)
    local batch = rcall('ZRANGE', zkey, lo, '+inf', 'BYSCORE', 'LIMIT', offset, count, 'WITHSCORES')
    for i = 1, #batch, 2 do
      if #out >= need then return out end
      consider(batch[i], tonumber(batch[i + 1]))
    end
    if #batch < 2 * count then break end
    offset = offset + count
  end
  return out
end

-- Calls visit(lb) for the buckets whose lower bound lies in [lo, hi] (scores
-- or '-inf'/'+inf'), in order, until it returns true; reads the directory 16 at a time.
local function each_bucket(ix, lo, hi, visit)
  while true do
    local lbs = rcall('ZRANGE', ix.dir, lo, hi, 'BYSCORE', 'LIMIT', 0, 16)
    for i = 1, #lbs do
      if visit(lbs[i]) then return end
    end
    if #lbs < 16 then return end
    lo = '(' .. lbs[#lbs]
  end
end

-- zset_after over a bucketed index: the buckets from the one of max(cursor, NOW) on.
local function bidx_after(ix, after_e, after_m, need, out, keep)
  local from = NOW
  if after_e and after_e > from then from = after_e end
  local lb = bucket_of(ix, from)
  each_bucket(ix, lb or '-inf', '+inf', function(b)
    -- Only the cursor's bucket holds members at or before it.
    if b == lb then
      zset_after(ix.bucket(b), after_e, after_m, need, out, keep)
    else
      zset_after(ix.bucket(b), nil, nil, need, out, keep)
    end
    return #out >= need
  end)
  return out
end

-- Whether an earlier-layout index key exists, asked once per key and call or
-- batch (forget_legacy, from start_batch): nothing adds to those keys, and
-- one emptied meanwhile answers its ZREMs and reads as empty (expire_due ends
-- many sessions of one data source and tenant).
local LEGACY
local function forget_legacy() LEGACY = {} end
local function legacy_exists(key)
  local there = LEGACY[key]
  if there == nil then
    there = rcall('EXISTS', key) == 1
    LEGACY[key] = there
  end
  return there
end

local function legacy_zrem(key, sid)
  if legacy_exists(key) then rcall('ZREM', key, sid) end
end

-- Whether any of the tenant's earlier-layout keys for this user and data
-- source exists: one EXISTS for the three (all in the partition's slot), so a
-- deployment without them pays one call per removal; a miss is remembered for
-- each key.
local function legacy_any(tp, uid, ds)
  local ku, ks, ka = uid and k_user(tp, uid), k_src(tp, ds), k_all(tp)
  if LEGACY[ks] == false and LEGACY[ka] == false and (not ku or LEGACY[ku] == false) then return false end
  if ku then
    if rcall('EXISTS', ku, ks, ka) > 0 then return true end
    LEGACY[ku] = false
  elseif rcall('EXISTS', ks, ka) > 0 then
    return true
  end
  LEGACY[ks], LEGACY[ka] = false, false
  return false
end

-- Merges two lists of {sid, score} in (score, sid) order, the first 'need'.
local function merge_members(a, b, need)
  if #b == 0 then return a end
  if #a == 0 then return b end
  local out, i, j = {}, 1, 1
  while #out < need and (a[i] or b[j]) do
    local x, y = a[i], b[j]
    if y == nil or (x ~= nil and (x[2] < y[2] or (x[2] == y[2] and x[1] < y[1]))) then
      out[#out + 1] = x
      i = i + 1
    else
      out[#out + 1] = y
      j = j + 1
    end
  end
  return out
end

-- Live sessions after the cursor (after_sid a session id), up to 'need', in
-- (expire, id) order, of a user ('uid'), a data source ('ds') or the tenant
-- (neither): the index and its earlier-layout key, merged.
local function index_after(tp, uid, ds, after_e, after_sid, need, keep)
  local after_m = after_sid and sid_member(after_sid) or ''
  local current, legacy = {}, {}
  local legacy_key
  if uid then
    zset_after(k_user_idx(tp, uid), after_e, after_m, need, current, keep)
    legacy_key = k_user(tp, uid)
  elseif ds then
    bidx_after(src_index(tp, ds), after_e, after_m, need, current, keep)
    legacy_key = k_src(tp, ds)
  else
    bidx_after(all_index(tp), after_e, after_m, need, current, keep)
    legacy_key = k_all(tp)
  end
  if legacy_exists(legacy_key) then zset_after(legacy_key, after_e, after_sid or '', need, legacy, keep) end
  return merge_members(current, legacy, need)
end

-- The user's live session ids (score > NOW), both layouts.
local function user_live(tp, uid)
  local out = rcall('ZRANGE', k_user(tp, uid), '(' .. istr(NOW), '+inf', 'BYSCORE')
  for _, m in ipairs(rcall('ZRANGE', k_user_idx(tp, uid), '(' .. istr(NOW), '+inf', 'BYSCORE')) do
    out[#out + 1] = member_sid(m)
  end
  return out
end

-- Up to 'n' members {sid, score} of the data source's index with score <= bound,
-- lowest first (both layouts; the order across them does not matter to expiry).
local function source_due(tp, ds, bound, n)
  local out = {}
  if legacy_exists(k_src(tp, ds)) then
    local legacy = rcall('ZRANGE', k_src(tp, ds), '-inf', istr(bound), 'BYSCORE', 'LIMIT', 0, n, 'WITHSCORES')
    for i = 1, #legacy, 2 do out[#out + 1] = { legacy[i], tonumber(legacy[i + 1]) } end
  end
  if #out >= n then return out end
  local ix = src_index(tp, ds)
  each_bucket(ix, '-inf', istr(bound), function(b)
    local got = rcall('ZRANGE', ix.bucket(b), '-inf', istr(bound), 'BYSCORE', 'LIMIT', 0, n - #out, 'WITHSCORES')
    for k = 1, #got, 2 do out[#out + 1] = { member_sid(got[k]), tonumber(got[k + 1]) } end
    return #out >= n
  end)
  return out
end

-- The lowest score in the data source's index (both layouts), or nil when empty.
-- A directory entry whose bucket is gone (expired keys) is dropped on the way.
local function source_min(tp, ds)
  if not IX_MADE then index_facts() end
  local best
  if legacy_exists(k_src(tp, ds)) then
    local legacy = rcall('ZRANGE', k_src(tp, ds), 0, 0, 'WITHSCORES')
    if #legacy > 0 then best = tonumber(legacy[2]) end
  end
  local ix = src_index(tp, ds)
  for _ = 1, 16 do
    local lb = rcall('ZRANGE', ix.dir, 0, 0)[1]
    if not lb then break end
    local first = rcall('ZRANGE', ix.bucket(lb), 0, 0, 'WITHSCORES')
    if #first > 0 then
      if not best or tonumber(first[2]) < best then best = tonumber(first[2]) end
      break
    end
    rcall('ZREM', ix.dir, lb)
    DIR_SPAN[ix.dir], INDEX_EXPIRY[ix.dir] = nil, nil
  end
  return best
end

-- Puts the session in its user and data-source indexes with score = expire time,
-- and keeps the due-queue score a lower bound of the data-source index minimum.
local function index_add_user(tp, sid, rec, e)
  e = e or tonumber(rec.e)
  local key = k_user_idx(tp, rec.u)
  -- What the call knows is read before calling for it (as bidx_add).
  rcall('ZADD', key, ISTR[e] or istr(e), sid == MEMBER_OF and MEMBER or sid_member(sid))
  local at = e + GRACE
  local known = INDEX_EXPIRY and INDEX_EXPIRY[key]
  if not (known and known >= at) then index_expire_at_least(key, at) end
end

-- Lowers the due-queue score of the session's data source to e (ZADD LT)
-- unless it is known to be no higher. expire_due, which also raises and
-- removes members, forgets what it changes (due_forget).
-- A score below the queue's lowest is a new head, which schedulers sleeping
-- until the old one must hear of: one entry on the due wake-ups (K_WAKE),
-- where they block. Other writes append nothing, so with the usual TTLs (a
-- new session expires after those queued) a create costs no wake-up.
local function due_lower(T, ds, e)
  if not IX_MADE then index_facts() end
  local known = DUE_AT[T]
  if not known then
    known = {}
    DUE_AT[T] = known
  end
  local at = known[ds]
  if at and at <= e then return end
  if not DUE_HEAD then
    local head = rcall('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
    DUE_HEAD = tonumber(head[2]) or math.huge
  end
  rcall('ZADD', K_DUE, 'LT', istr(e), due_member(T, ds))
  known[ds] = e
  if e < DUE_HEAD then
    DUE_HEAD = e
    rcall('XADD', K_WAKE, 'MAXLEN', '1', '*', 'e', istr(e))
  end
end
local function due_forget(T, ds)
  if not IX_MADE then index_facts() end
  if DUE_AT[T] then DUE_AT[T][ds] = nil end
  -- Raised or removed: the lowest score is unknown again.
  DUE_HEAD = nil
end

local function index_add_source(tp, T, sid, rec, e)
  e = e or tonumber(rec.e)
  bidx_add(src_index(tp, rec.d), sid == MEMBER_OF and MEMBER or sid_member(sid), e)
  due_lower(T, rec.d, e)
end

local function index_add(tp, T, sid, rec, e)
  e = e or tonumber(rec.e)
  index_add_user(tp, sid, rec, e)
  index_add_source(tp, T, sid, rec, e)
  bidx_add(all_index(tp), sid == MEMBER_OF and MEMBER or sid_member(sid), e)
end

-- Takes the session, indexed with expire time e, out of its data source's index.
local function index_remove_source(tp, sid, ds, e)
  legacy_zrem(k_src(tp, ds), sid)
  bidx_remove(src_index(tp, ds), sid_member(sid), e)
end

-- Takes the session out of its earlier-layout indexes (user, data source, tenant).
local function legacy_remove(tp, sid, uid, ds)
  if not legacy_any(tp, uid, ds) then return end
  if uid then legacy_zrem(k_user(tp, uid), sid) end
  legacy_zrem(k_src(tp, ds), sid)
  legacy_zrem(k_all(tp), sid)
end

-- Takes the session out of every index it is in with expire time 'e' (rec.e
-- unless the index score is known to differ). The due-queue member is left in
-- place; expire_due corrects it lazily.
local function index_remove(tp, sid, rec, e)
  if not IX_MADE then index_facts() end
  e = e or tonumber(rec.e)
  local m = sid_member(sid)
  if rec.u then
    local key = k_user_idx(tp, rec.u)
    rcall('ZREM', key, m)
    INDEX_EXPIRY[key] = nil
  end
  legacy_remove(tp, sid, rec.u, rec.d)
  bidx_remove(src_index(tp, rec.d), m, e)
  bidx_remove(all_index(tp), m, e)
end

-- Moves the session, indexed with expire time 'from', to its new expire time
-- rec.e in every index (extend): scores change in place where they can.
local function index_move(tp, T, sid, rec, from)
  local e = tonumber(rec.e)
  local m = sid_member(sid)
  legacy_remove(tp, sid, rec.u, rec.d)
  local key = k_user_idx(tp, rec.u)
  rcall('ZADD', key, istr(e), m)
  index_expire_at_least(key, e + GRACE)
  bidx_move(src_index(tp, rec.d), m, from, e)
  due_lower(T, rec.d, e)
  bidx_move(all_index(tp), m, from, e)
end
`;
