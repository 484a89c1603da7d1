// Lua source of the log_position script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const logPositionLua = String.raw`
-- log_position: ARGV[2] = encoded tenant, or "" for the whole log.
-- Returns {"ok", id, generation}: the last id the event log assigned, or
-- "<generation>-0" when it has none (see generation() in the prelude); with a
-- tenant, the id of that tenant's newest event of this generation (else the
-- generation's start).
local G = generation()
local start = G .. '-0'
if ARGV[2] ~= '' then
  local last = rcall('GET', k_ev_last(tenant_prefix(ARGV[2])))
  local ms = last and tonumber(string.match(last, '^(%d+)-'))
  if ms and ms >= tonumber(G) then return { 'ok', last, G } end
  return { 'ok', start, G }
end
if rcall('EXISTS', K_EV) == 0 then return { 'ok', start, G } end
local info = rcall('XINFO', 'STREAM', K_EV)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return { 'ok', info[i + 1], G } end
end
return { 'ok', start, G }
`;
