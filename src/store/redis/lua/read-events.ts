// Lua source of the read_events script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const readEventsLua = String.raw`
-- read_events: ARGV[OP..] = after (an id "<ms>-<seq>", checked by the caller), limit
-- Returns {"ok", lastId, entries, generation} where entries is XRANGE's reply
-- for the events strictly after 'after', {"out_of_range", "generation"} for a
-- cursor older than the log's generation (of a log Redis lost; "0-0", the
-- start, is always of the current log), or {"out_of_range"} when events after
-- it may have been trimmed or the log never reached it. The check and the read are one
-- atomic step, so nothing can be trimmed in between. The rule is
-- cursorRetained() of src/store/event-id.ts: Redis does not record the largest
-- trimmed id, so once anything was trimmed only a cursor at or after the first
-- retained entry is known to be complete.
local after, limit = ARGV[OP], tonumber(ARGV[OP + 1])

local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function cmp(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm and -1 or 1 end
  if as ~= bs then return as < bs and -1 or 1 end
  return 0
end

local G = generation()
local start = G .. '-0'
if cmp(after, '0-0') ~= 0 and cmp(after, start) < 0 then return { 'out_of_range', 'generation' } end
-- With several partitions a cursor may lie past this partition's last event
-- (it is a position of the merged log); only one past this partition's clock
-- was never reached.
local merged = Q ~= ''
if merged and parse(after) > NOW then return { 'out_of_range' } end
if rcall('EXISTS', K_EV) == 0 then
  if merged or cmp(after, '0-0') == 0 or cmp(after, start) == 0 then return { 'ok', start, {}, G } end
  return { 'out_of_range' }
end
local info = rcall('XINFO', 'STREAM', K_EV)
local h = {}
for i = 1, #info, 2 do h[info[i]] = info[i + 1] end
local last = h['last-generated-id']
if not merged and cmp(after, last) > 0 then return { 'out_of_range' } end
if tonumber(h['entries-added']) > tonumber(h['length']) then
  local first = h['first-entry']
  if first then
    if cmp(after, first[1]) < 0 then return { 'out_of_range' } end
  elseif cmp(after, last) < 0 or (not merged and cmp(after, last) ~= 0) then
    return { 'out_of_range' }
  end
end
return { 'ok', last, rcall('XRANGE', K_EV, '(' .. after, '+', 'COUNT', limit), G }
`;
