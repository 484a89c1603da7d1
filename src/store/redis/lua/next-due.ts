// Lua source of the next_due script (see prelude.ts for the shared header). String.raw keeps Lua escapes as written.
export const nextDueLua = String.raw`
-- next_due: no operation arguments.
-- Returns {"ok", dueAt ("" when nothing is queued), now, wake}: the lowest
-- due-queue score (a lower bound of the earliest expire time) with Redis's
-- clock, so the scheduler's sleep does not depend on its own clock agreeing
-- with Redis's, and the last due wake-up's id ("0-0": none), after which a
-- wait for a new head starts (RedisStore.waitDue).
local head = rcall('ZRANGE', K_DUE, 0, 0, 'WITHSCORES')
local wake = rcall('XREVRANGE', K_WAKE, '+', '-', 'COUNT', 1)
return { 'ok', head[2] or '', istr(NOW), wake[1] and wake[1][1] or '0-0' }
`;
