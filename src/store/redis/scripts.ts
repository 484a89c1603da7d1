/**
 * The Lua scripts, as one Redis function library: the shared prelude once,
 * then each script's body as a function. Redis compiles and runs a library
 * once (FUNCTION LOAD), so a call (FCALL) runs only its body; an EVAL script
 * would run the whole prelude again on every call, making each of its ~90
 * closures and linking their upvalues. The sources live in TypeScript modules
 * (lua/*.ts) rather than .lua files so the compiled build carries them
 * without a copy step.
 *
 * The library's name and its functions' names carry a hash of its source, so
 * processes of different versions sharing a Redis each call their own. Redis
 * keeps functions in RDB and AOF and replicates them; a Redis that lacks the
 * library (a new or emptied node, FUNCTION FLUSH) answers "Function not found"
 * and the store loads it and calls again (script-library.ts).
 */
import { createHash } from "node:crypto";
import { claimLua } from "./lua/claim.js";
import { clearDataLua } from "./lua/clear-data.js";
import { closeLua } from "./lua/close.js";
import { createLua } from "./lua/create.js";
import { deleteDataLua } from "./lua/delete-data.js";
import { expireDueLua } from "./lua/expire-due.js";
import { extendLua } from "./lua/extend.js";
import { getDataLua } from "./lua/get-data.js";
import { getLua } from "./lua/get.js";
import { listDataLua } from "./lua/list-data.js";
import { listLua } from "./lua/list.js";
import { logPositionLua } from "./lua/log-position.js";
import { nextDueLua } from "./lua/next-due.js";
import { preludeLua } from "./lua/prelude.js";
import { readEventsLua } from "./lua/read-events.js";
import { setDataLua } from "./lua/set-data.js";
import { updateLua } from "./lua/update.js";
import { packCalls } from "./packed-calls.js";
import type { ScriptArg } from "./script-library.js";

const bodies = {
  create: createLua,
  claim: claimLua,
  get: getLua,
  update: updateLua,
  extend: extendLua,
  close: closeLua,
  list: listLua,
  setData: setDataLua,
  getData: getDataLua,
  deleteData: deleteDataLua,
  listData: listDataLua,
  clearData: clearDataLua,
  expireDue: expireDueLua,
  nextDue: nextDueLua,
  readEvents: readEventsLua,
  logPosition: logPositionLua,
} as const;

export type ScriptName = keyof typeof bodies;

/**
 * Scripts that run when Redis is full without a retry: reads whose only writes
 * are best effort (the event log's generation). Every other script is refused
 * before it runs while Redis is at maxmemory (a function without flags is
 * "deny-oom"), and a read is then sent again under pressure.
 */
const RUN_WHEN_FULL: ReadonlySet<ScriptName> = new Set<ScriptName>(["nextDue", "readEvents", "logPosition"]);

/**
 * Scripts a caller waits for, whose calls to one partition are sent together
 * as one FCALL of their batch function (fcall-batcher.ts). Not the background
 * ones (expiry, the event log): they run one call at a time anyway.
 */
const BATCHED: ReadonlySet<ScriptName> = new Set<ScriptName>([
  "create",
  "claim",
  "get",
  "update",
  "extend",
  "close",
  "list",
  "setData",
  "getData",
  "deleteData",
  "listData",
  "clearData",
]);

/** The library: its source (for FUNCTION LOAD) and each script's function names. */
export interface ScriptLibrary {
  readonly source: string;
  /** The function to FCALL for a script; `pressure`: the call's variant flagged allow-oom. */
  readonly functionName: (name: ScriptName, pressure: boolean) => string;
  /** The script's batch function (run_batch), with the same flags; undefined: its calls go one by one. */
  readonly batchFunctionName: (name: ScriptName, pressure: boolean) => string | undefined;
}

/**
 * First element of a batch item's reply when the item raised a Lua error; the
 * error's text follows. A call's own reply starts with NOW (digits).
 */
export const BATCH_ITEM_ERROR = "!";

/**
 * Each body runs as a function whose reply gets the common header first:
 *
 *   { NOW, n, <n lazily expired records>, <the body's reply...> }
 *
 * NOW is the call's clock (when its writes and events happened); the records
 * are the sessions load_session archived as expired on the way (LAZY in the
 * prelude), whichever operation met them. RedisStore.script strips the header.
 * Each script is registered twice: as is (refused while Redis is full) and
 * flagged allow-oom, for the call RedisStore sends again under pressure.
 */
export function scriptLibrary(): ScriptLibrary {
  const names = Object.keys(bodies) as ScriptName[];
  const code = [
    preludeLua,
    REPLY_HEADER,
    ...names.map((name) => `-- ${name}\nlocal function body_${name}()\n${bodies[name]}\nend`),
  ].join("\n");
  const hash = createHash("sha1").update(code).digest("hex").slice(0, 12);
  const fnOf = (name: ScriptName, pressure: boolean): string => `sd_${hash}_${name}${pressure ? "_p" : ""}`;
  // Made once: a call asks for its names every time.
  const fnNames = new Map(names.map((name) => [name, [fnOf(name, false), fnOf(name, true)] as const]));
  const batches = new Map(names.filter((name) => BATCHED.has(name)).map((name) => [name, [`${fnOf(name, false)}_b`, `${fnOf(name, true)}_b`] as const]));
  const fn = (name: ScriptName, pressure: boolean): string => (fnNames.get(name) as readonly string[])[pressure ? 1 : 0] as string;
  const batchFn = (name: ScriptName, pressure: boolean): string | undefined => batches.get(name)?.[pressure ? 1 : 0];
  const register = (name: ScriptName, pressure: boolean): string[] => {
    const flags = pressure || RUN_WHEN_FULL.has(name) ? "'allow-oom'" : "";
    const batch = batchFn(name, pressure);
    return [
      `redis.register_function{function_name = '${fn(name, pressure)}', flags = { ${flags} }, callback = function(_, args) begin(args) return with_header(body_${name}()) end}`,
      ...(batch === undefined ? [] : [`redis.register_function{function_name = '${batch}', flags = { ${flags} }, callback = function(_, args) return run_batch(body_${name}, args) end}`]),
    ];
  };
  const source = [`#!lua name=sessiond_${hash}`, code, ...names.flatMap((name) => [...register(name, false), ...register(name, true)])].join("\n");
  return { source, functionName: fn, batchFunctionName: batchFn };
}

/**
 * The arguments of a call, split in two: `shared`, the same for every call of
 * a script to one partition (so a batch sends them once), and `own`.
 *   shared: P, expiryGraceMs, archiveRetentionMs, maxDataKeys,
 *           eventRetentionCount, eventRetentionMs, pressure flag, Q, partition, partitions
 *   own:    encoded tenant T, guard user, guard level, the operation's arguments
 */
export interface ScriptCall {
  readonly shared: readonly ScriptArg[];
  readonly own: readonly ScriptArg[];
}

const BATCH_SHARED_WIDTH = 10;

/** A call's arguments in the prelude's ARGV order (its own FCALL). */
export function loneCallArguments(call: ScriptCall): ScriptArg[] {
  const { shared: s, own: o } = call;
  const args: ScriptArg[] = [s[0] as ScriptArg, o[0] as ScriptArg, s[1] as ScriptArg, s[2] as ScriptArg, s[3] as ScriptArg, s[4] as ScriptArg, s[5] as ScriptArg];
  args.push(o[1] as ScriptArg, o[2] as ScriptArg, s[6] as ScriptArg, s[7] as ScriptArg, s[8] as ScriptArg, s[9] as ScriptArg);
  for (let i = 3; i < o.length; i++) args.push(o[i] as ScriptArg);
  return args;
}

/** The arguments of a batch function (run_batch) for calls that share `shared`: the calls' own ones packed in one (packed-calls.ts). */
export function batchArguments(shared: readonly ScriptArg[], owns: readonly (readonly ScriptArg[])[]): ScriptArg[] {
  return [owns.length, ...shared, packCalls(owns)];
}

/** Strings in front of every reply: NOW and the count of lazily expired records. */
export const REPLY_HEADER_WIDTH = 2;

const REPLY_HEADER = String.raw`-- 'headed': the body put the header in front itself, or answers without one
-- (a get's live session: its reply starts with "ok", see RedisStore.runScript).
local function with_header(reply, headed)
  if headed then return reply end
  -- Mostly nothing expired on the way and the reply is short: one table made
  -- to size (unpack puts every element on Lua's stack, so only short replies).
  if not LAZY then
    if #reply <= 64 then return { istr(NOW), '0', unpack(reply) } end
    return append({ istr(NOW), '0' }, reply)
  end
  return append(append({ istr(NOW), istr(#LAZY / RECORD_WIDTH) }, LAZY), reply)
end

-- One call of a batch: the same steps as its own function's, on the batch's clock.
local function run_one(body, args, now, shared_set)
  begin(args, now, shared_set)
  return with_header(body())
end

-- A batch function's arguments: the count of calls, the ${BATCH_SHARED_WIDTH} arguments every
-- call of the batch shares (P, GRACE, RETENTION, MAX_DATA_KEYS, EV_MAXLEN,
-- EV_MAXAGE, PRESSURE, Q, PART, PARTS), then every call's own arguments
-- (T, guard user, guard level, then the operation's) in one MessagePack
-- array of one array of strings per call (batchArguments in scripts.ts,
-- packed-calls.ts): cmsgpack makes them the Lua strings the arguments of the
-- call's own FCALL would be. Each call runs in turn as it runs alone
-- (begin sets a call's state from its own arguments, rebuilt in the prelude's
-- ARGV order), but on one reading of Redis's clock for the whole batch, which
-- runs atomically, with the shared arguments set once and what the calls
-- learn of the data kept for the next ones (start_batch: index keys,
-- counters, number strings; the counters and each tenant's newest event id
-- are written once, at the end: finish_batch); its reply (with
-- its own header) is the batch reply's element. A call that raises an error is answered with it
-- ({ '${BATCH_ITEM_ERROR}', text }) and the next one runs: Redis does not roll back the
-- writes it made before the error, exactly as when the call runs alone and
-- fails, and the calls after it see the same data they would see if it had
-- been its own FCALL.
-- The replies go back as one MessagePack string (cmsgpack.pack, read by
-- packed-reply.ts into what the same table as a RESP reply reads as): one
-- bulk string costs ioredis a fraction of what hundreds of them do.
-- One table holds the arguments of each short call of a batch in turn
-- (CALL_ARGS, CALL_ARGS_TOP its last index): a table made per call costs its
-- allocation and the garbage collector's work. A long call's (a create's) are
-- made in one constructor: unpack copies them for less than a Lua loop would.
-- No body keeps ARGV past its call or writes it.
local CALL_ARGS, CALL_ARGS_TOP, SHORT_CALL = {}, 0, 8
local function run_batch(body, args)
  local out = {}
  local now = clock()
  start_batch(true)
  local short = CALL_ARGS
  short[1], short[3], short[4], short[5], short[6], short[7] = args[2], args[3], args[4], args[5], args[6], args[7]
  short[10], short[11], short[12], short[13] = args[8], args[9], args[10], args[11]
  local calls = cmsgpack.unpack(args[${BATCH_SHARED_WIDTH} + 2])
  for i = 1, tonumber(args[1]) do
    local call = calls[i]
    local n = #call
    local own = CALL_ARGS
    if n <= SHORT_CALL then
      own[2], own[8], own[9] = call[1], call[2], call[3]
      for j = 4, n do own[OP + j - 4] = call[j] end
      -- What a longer earlier call left (#ARGV counts a call's arguments).
      local top = OP + n - 4
      for j = top + 1, CALL_ARGS_TOP do own[j] = nil end
      CALL_ARGS_TOP = top
    else
      -- Made to size in one step (unpack puts what it copies on Lua's stack: at most 64).
      own = { args[2], call[1], args[3], args[4], args[5], args[6], args[7], call[2], call[3], args[8], args[9], args[10], args[11], unpack(call, 4, math.min(n, 64)) }
      for j = 65, n do own[OP + j - 4] = call[j] end
    end
    local ok, reply = pcall(run_one, body, own, now, i > 1)
    if ok then
      out[i] = reply
    elseif type(reply) == 'table' and reply.err then
      out[i] = { '${BATCH_ITEM_ERROR}', reply.err }
    else
      out[i] = { '${BATCH_ITEM_ERROR}', tostring(reply) }
    end
  end
  finish_batch()
  return cmsgpack.pack(out)
end`;
