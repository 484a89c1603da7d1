// Lua source of the expire_due script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const expireDueLua = String.raw`
-- expire_due: ARGV[OP..] = limit
-- Archives as expired up to 'limit' sessions of any tenant whose expire time has
-- passed, in expire-time order, and returns {"ok", head, record, record...}:
-- head is the due queue's lowest score afterwards ("" when empty), so the
-- caller knows its next wake-up without another look.
--
-- The due queue holds one member "<T>\n<dataSource>" per data-source index whose
-- score is a lower bound of that index's earliest expire time. Taking the lowest
-- member and expiring its sessions up to the second-lowest score keeps the global
-- order; afterwards the member's score is set to its index's real minimum (or the
-- member is removed when the index is empty). A stale-low score costs one extra
-- round, so rounds are capped to bound the script's run time.
before_writes()
local limit = tonumber(ARGV[OP])
local out = { 'ok', '' }
-- Time retention of the event log (whole nodes only, so it is cheap to try often).
rcall('XTRIM', K_EV, 'MINID', '~', istr(NOW - EV_MAXAGE))
local done = 0
local rounds = limit + 64

while done < limit and rounds > 0 do
  rounds = rounds - 1
  local head = rcall('ZRANGE', K_DUE, 0, 1, 'WITHSCORES')
  if #head == 0 or tonumber(head[2]) > NOW then break end
  local member = head[1]
  local bound = NOW
  if head[4] and tonumber(head[4]) < bound then bound = tonumber(head[4]) end
  local nl = string.find(member, '\n', 1, true)
  local T = string.sub(member, 1, nl - 1)
  local ds = string.sub(member, nl + 1)
  local tp = tenant_prefix(T)
  local due = source_due(tp, ds, bound, limit - done)
  for i = 1, #due do
    local sid, score = due[i][1], due[i][2]
    local rec = load_record(tp, sid)
    if not rec then
      -- Redis already deleted the keys (no scheduler ran for longer than the
      -- grace): drop the orphaned entry and count it as expired. Its access-level
      -- gauge cannot be corrected because the record is gone.
      index_remove(tp, sid, { d = ds }, score)
      ctr_gauge(tp, 'active', -1)
      ctr_incr(tp, 'expired', 1)
      ctr_gauge(tp, 's:' .. ds, -1)
    elseif tonumber(rec.e) > NOW then
      -- Defensive: the index score was stale.
      index_remove(tp, sid, rec, score)
      index_add(tp, T, sid, rec)
    else
      append(out, end_session(tp, T, sid, rec, 'expired', tonumber(rec.e)))
      done = done + 1
    end
  end

  local first = source_min(tp, ds)
  if not first then
    rcall('ZREM', K_DUE, member)
  else
    rcall('ZADD', K_DUE, istr(first), member)
  end
  due_forget(T, ds)
end
local after = rcall('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
out[2] = after[2] or ''
return out
`;
