// Lua source of the update script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const updateLua = String.raw`
-- update: ARGV[OP..] = sessionId, expectedVersion ("" for none),
--   hasMetadata "1"|"0", metadata, accessLevel ("" to keep), dataSource ("" to keep),
--   maxDataSourcesPerTenant (0: no cap), sealed data source (with dataSource),
--   metadata tag (with metadata; "" each without encryption)
-- Returns {"ok", record...} or {"not_found"|"ended"|"version_mismatch"} or
-- {"limit_exceeded", "data_sources_per_tenant"}.
before_writes()
local T = ARGV[2]
local tp = tenant_prefix(T)
local sid = ARGV[OP]
local expected = ARGV[OP + 1]
local has_meta, meta = ARGV[OP + 2] == '1', ARGV[OP + 3]
local level, ds = ARGV[OP + 4], ARGV[OP + 5]
local max_sources = tonumber(ARGV[OP + 6]) or 0
local sealed_d, meta_tag = ARGV[OP + 7], ARGV[OP + 8]

local rec, arch = load_session(tp, T, sid)
if not rec then
  if arch then return { 'ended' } end
  return { 'not_found' }
end
if guard_denies(rec.l) then return { 'permission_denied', 'level' } end
if expected ~= '' and tonumber(expected) ~= tonumber(rec.v) then return { 'version_mismatch' } end
if ds ~= '' and ds ~= rec.d and not source_fits(tp, ds, max_sources) then return { 'limit_exceeded', 'data_sources_per_tenant' } end

local key = k_rec(tp, sid)
if level ~= '' and level ~= rec.l then
  ctr_gauge(tp, 'l:' .. rec.l, -1)
  ctr_gauge(tp, 'l:' .. level, 1)
  rec.l = level
  rcall('HSET', key, 'l', level_code(level))
end
if ds ~= '' and ds ~= rec.d then
  index_remove_source(tp, sid, rec.d, tonumber(rec.e))
  ctr_gauge(tp, 's:' .. rec.d, -1)
  ctr_gauge(tp, 's:' .. ds, 1)
  rec.d = ds
  rcall('HSET', key, 'd', ds)
  name_source(tp, ds, sealed_d)
  -- The name lives in the counters (sealed_source); a record of an earlier version carries its own.
  rcall('HDEL', key, 'D')
  rec.D = sealed_d ~= '' and sealed_d or nil
  index_add_source(tp, T, sid, rec)
end
if has_meta then
  rec.m = meta
  rcall('HSET', key, 'm', meta)
  if meta_tag ~= '' then
    rec.mt = meta_tag
    rcall('HSET', key, 'mt', meta_tag)
  end
end
bump_version(tp, sid, rec, false)

local out = encode_live(T, sid, rec)
emit(T, 'updated', out, nil)
return append({ 'ok' }, out)
`;
