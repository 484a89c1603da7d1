// Lua source of the list script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const listLua = String.raw`
-- list: ARGV[OP..] = userId ("" for any), dataSource ("" for any), limit,
--   cursor expireTime ("" for none), cursor sessionId
-- Returns {"ok", more "1"|"0", record, record...} with live sessions ordered by
-- (expireTime, sessionId) strictly after the cursor.
--
-- By user: the user's index (filtering by data source here when both are given).
-- By data source: that index. Unfiltered: the tenant-wide index. Each reads
-- about one page of index members (plus ties of the cursor's expire time).
local T = ARGV[2]
local tp = tenant_prefix(T)
local uid, ds = ARGV[OP], ARGV[OP + 1]
local limit = tonumber(ARGV[OP + 2])
local after_e = tonumber(ARGV[OP + 3])
local after_sid = ARGV[OP + 4]
local want = limit + 1
local BATCH = 64

-- Up to 'need' index members {sid, score} after the cursor and live (score > NOW),
-- in order; with 'only_ds', only sessions whose record has that data source.
local function candidates(zkey, only_ds, need)
  local out = {}
  local function consider(sid, score)
    if only_ds and redis.call('HGET', k_rec(tp, sid), 'd') ~= only_ds then return end
    out[#out + 1] = { sid, score }
  end
  local lo = '(' .. istr(NOW)
  if after_e and after_e > NOW then
    -- Members with the cursor's score, after its session id. Where the cursor's
    -- session is still there with that score, its rank starts the read (bounded
    -- by the page); otherwise the ties are read in batches, skipping the smaller ids.
    local start
    local score = redis.call('ZSCORE', zkey, after_sid)
    if score and tonumber(score) == after_e then start = redis.call('ZRANK', zkey, after_sid) + 1 end
    if start then
      while #out < need do
        local batch = redis.call('ZRANGE', zkey, start, start + BATCH - 1, 'WITHSCORES')
        local done = #batch < 2 * BATCH
        for i = 1, #batch, 2 do
          if tonumber(batch[i + 1]) ~= after_e then done = true break end
          if #out >= need then return out end
          consider(batch[i], after_e)
        end
        if done then break end
        start = start + BATCH
      end
    else
      local offset = 0
      while #out < need do
        local ties = redis.call('ZRANGE', zkey, istr(after_e), istr(after_e), 'BYSCORE', 'LIMIT', offset, BATCH)
        for i = 1, #ties do
          if #out >= need then return out end
          if ties[i] > after_sid then consider(ties[i], after_e) end
        end
        if #ties < BATCH then break end
        offset = offset + BATCH
      end
    end
    lo = '(' .. istr(after_e)
  end
  local offset = 0
  while #out < need do
    local batch = redis.call('ZRANGE', zkey, lo, '+inf', 'BYSCORE', 'LIMIT', offset, BATCH, 'WITHSCORES')
    for i = 1, #batch, 2 do
      if #out >= need then return out end
      consider(batch[i], tonumber(batch[i + 1]))
    end
    if #batch < 2 * BATCH then break end
    offset = offset + BATCH
  end
  return out
end

local picked
if uid ~= '' then
  picked = candidates(k_user(tp, uid), ds ~= '' and ds or nil, want)
elseif ds ~= '' then
  picked = candidates(k_src(tp, ds), nil, want)
else
  picked = candidates(k_all(tp), nil, want)
end

local more = #picked > limit
local out = { 'ok', more and '1' or '0' }
for i = 1, math.min(#picked, limit) do
  local sid = picked[i][1]
  local rec = load_hash(k_rec(tp, sid))
  if rec then append(out, encode_live(T, sid, rec)) end
end
return out
`;
