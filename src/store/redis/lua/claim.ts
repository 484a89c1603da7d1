// Lua source of the claim script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
import { VOID_MS } from "../request-claims.js";

export const claimLua = String.raw`
-- claim: with several partitions, an unguarded request id is claimed in its own
-- partition (keys.ts k_claim) before the create runs in the user's; the claim's
-- value is "<session id> <claim time (ms)>" (request-claims.ts has the protocol).
-- ARGV[OP..] = mode, session id, then by mode:
--   'claim', lifeMs, write ('1' | '0'), names... (the request id as stored, then
--     aliases in this partition): the first name holding a claim answers
--     {'ok', 'held', name, value, age (ms)}; else with write '1' the first name is
--     claimed for lifeMs: {'ok', 'claimed', until (ms)}; with '0': {'ok', 'none'}.
--   'swap', lifeMs, held name, held value, name: when the held name still holds
--     that value it is deleted and, unless name is '', name claimed for lifeMs:
--     {'ok', 'claimed', until}; else (or with name '') {'ok', 'moved'}.
--   'release', name: the claim of name deleted if it is the session's: {'ok'}.
--   'touch', lifeMs, name: the session's claim made to last at least lifeMs
--     more (claimed again if gone): {'ok', until}.
--   'resolve', void ('1' | '0'): run in the session's partition. A live session
--     answers {'ok', 'live', record...}; an ended or void one {'ok', 'free'}; one
--     that does not exist {'ok', 'pending'}, or with void '1' the id is made void
--     (create refuses it) and {'ok', 'free'}.
local T = ARGV[2]
local tp = tenant_prefix(T)
local mode, sid = ARGV[OP], ARGV[OP + 1]

local function claim(name, life)
  rcall('SET', k_claim(tp, name), sid .. ' ' .. istr(NOW), 'PX', istr(life))
  return { 'ok', 'claimed', istr(NOW + life) }
end

if mode == 'claim' then
  for i = OP + 4, #ARGV do
    local value = rcall('GET', k_claim(tp, ARGV[i]))
    if value then
      local at = tonumber(string.match(value, ' (%d+)$')) or 0
      return { 'ok', 'held', ARGV[i], value, istr(NOW - at) }
    end
  end
  if ARGV[OP + 3] ~= '1' then return { 'ok', 'none' } end
  before_writes()
  return claim(ARGV[OP + 4], tonumber(ARGV[OP + 2]))
end

if mode == 'swap' then
  local held, name = ARGV[OP + 3], ARGV[OP + 5]
  if rcall('GET', k_claim(tp, held)) ~= ARGV[OP + 4] then return { 'ok', 'moved' } end
  before_writes()
  rcall('DEL', k_claim(tp, held))
  if name == '' then return { 'ok', 'moved' } end
  return claim(name, tonumber(ARGV[OP + 2]))
end

if mode == 'release' then
  local key = k_claim(tp, ARGV[OP + 2])
  local value = rcall('GET', key)
  if value and string.match(value, '^(%S+)') == sid then
    before_writes()
    rcall('DEL', key)
  end
  return { 'ok' }
end

if mode == 'touch' then
  local key = k_claim(tp, ARGV[OP + 3])
  local at = NOW + tonumber(ARGV[OP + 2])
  before_writes()
  if rcall('SET', key, sid .. ' ' .. istr(NOW), 'NX', 'PX', istr(at - NOW)) then return { 'ok', istr(at) } end
  -- Another session's claim: this one's request id was taken over while it
  -- was live, which only clocks far apart can do; the session keeps its extend.
  if string.match(rcall('GET', key) or '', '^(%S+)') ~= sid then return { 'ok', istr(at) } end
  expire_at_least(key, at)
  return { 'ok', istr(math.max(at, rcall('PEXPIRETIME', key))) }
end

if mode == 'resolve' then
  local rec, arch = load_session(tp, T, sid)
  if rec then return append({ 'ok', 'live' }, encode_live(T, sid, rec)) end
  if arch or rcall('EXISTS', k_void(tp, sid)) == 1 then return { 'ok', 'free' } end
  if ARGV[OP + 2] ~= '1' then return { 'ok', 'pending' } end
  before_writes()
  rcall('SET', k_void(tp, sid), '1', 'PX', '${VOID_MS}')
  return { 'ok', 'free' }
end

return { 'unknown_mode' }
`;
