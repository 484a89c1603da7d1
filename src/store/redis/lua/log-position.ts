// Lua source of the log_position script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const logPositionLua = String.raw`
-- log_position: ARGV[2] = encoded tenant, or "" for the whole log.
-- Returns {"ok", id}: the last id the event log assigned ("0-0" when it has
-- none), or with a tenant the id of that tenant's newest event ("0-0" when none).
if ARGV[2] ~= '' then
  return { 'ok', redis.call('GET', k_ev_last(tenant_prefix(ARGV[2]))) or '0-0' }
end
if redis.call('EXISTS', K_EV) == 0 then return { 'ok', '0-0' } end
local info = redis.call('XINFO', 'STREAM', K_EV)
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return { 'ok', info[i + 1] } end
end
return { 'ok', '0-0' }
`;
